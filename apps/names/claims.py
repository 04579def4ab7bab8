"""Who may take a DNS name on the platform: the one rule every module that takes a name calls.

A name (a zone, a website hostname or alias, a mail domain, a domain; later CDN and portal
hostnames) that EQUALS, SITS UNDER or SITS ABOVE a name another tenant holds is refused with 409
``name_taken``, unless that tenant delegated a tree holding it to the requester (``NameDelegation``).
The answer never says who holds the name, nor what kind of object holds it.

What "holds" means is each module's own registration on ``HOLDERS`` (``register(Holder(...))``),
so a new module is one call in its ``AppConfig.ready``: today zones, live websites' hostnames and
mail domains hold from creation (they are served by shared daemons as soon as they exist); a domain
holds only once verified and active, so an unproven registration cannot block the real owner.

"Under" is computed on labels (``balpha.example`` is not under ``alpha.example``), and a bare
public suffix (``com``, ``co.uk``, ``github.io``; the Public Suffix List shipped offline by
``publicsuffixlist``) can be nobody's. Two related names always share their registrable domain, so
the check and the insert run under a PostgreSQL advisory lock on that registrable domain: two
tenants racing for ``a.x.example`` and ``x.example`` serialise, and the second sees the first."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import idna
from django.db.models import Model, Q
from publicsuffixlist import PublicSuffixList

from apps.common.exceptions import Conflict, InvalidInput
from apps.common.locks import advisory_xact_lock
from apps.common.registry import Registry

from .models import NameDelegation

_psl = PublicSuffixList()  # the list shipped inside the package: no network


@dataclass(frozen=True)
class Holder:
    """Rows of ``model`` whose ``field`` holds a name while they match ``holds``."""

    kind: str
    model: type[Model]
    field: str = "name"
    holds: Q = dataclass_field(default_factory=Q)


HOLDERS: Registry[Holder] = Registry("name holder")


def register(holder: Holder) -> Holder:
    """Called by each module that takes names (its ``AppConfig.ready``): ``holder`` under its kind."""
    return HOLDERS.register(holder.kind)(holder)


def holders() -> list[Holder]:
    return list(HOLDERS)


def canonical(name: str) -> str:
    """Lower case, no trailing dot, A-labels: the form every module stores. A leading ``*.``
    (a wildcard website) is kept."""
    text = str(name or "").strip().rstrip(".").lower()
    if not text.isascii():
        star = text.startswith("*.")
        try:
            text = ("*." if star else "") + idna.encode(text[2:] if star else text, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise InvalidInput(f"Not a valid domain name: {name!r}.", field="name") from exc
    return text


def base(name: str) -> str:
    """The name a wildcard stands over (``*.x.example`` covers ``x.example``'s tree)."""
    return name[2:] if name.startswith("*.") else name


def registrable(name: str) -> str:
    """The registrable domain (``a.b.example.co.uk`` → ``example.co.uk``)."""
    return _psl.privatesuffix(base(name)) or base(name)


def is_public_suffix(name: str) -> bool:
    return _psl.is_public(base(name))


def ancestors(name: str) -> list[str]:
    """``a.b.example`` → ``["a.b.example", "b.example", "example"]`` (the name itself included)."""
    labels = base(name).split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def within(name: str, tree: str) -> bool:
    """Is ``name`` ``tree`` or a name under it (on labels)?"""
    name, tree = base(name), base(tree)
    return name == tree or name.endswith("." + tree)


def _related_q(name: str, column: str) -> Q:
    """Rows whose ``column`` is ``name``, an ancestor of it (or that ancestor's wildcard), or under it."""
    up = ancestors(name)
    return Q(**{f"{column}__in": up + [f"*.{n}" for n in up]}) | Q(**{f"{column}__endswith": "." + base(name)})


def lock(names: Iterable[str]) -> None:
    """One lock per registrable domain, so claimers of a parent and of its child serialise."""
    advisory_xact_lock(f"name:{registrable(n)}" for n in names)


def held_by_others(tenant_id, name: str) -> list[tuple[object, str, str]]:
    """(tenant id, kind, name) of every holding of another tenant that conflicts with ``name`` and
    that its holder did not delegate to ``tenant_id``."""
    found = []
    for holder in HOLDERS:
        rows = (
            holder.model.all_tenants.filter(holder.holds)
            .filter(_related_q(name, holder.field))
            .exclude(tenant_id=tenant_id)
            .values_list("tenant_id", holder.field)
        )
        found += [(tid, holder.kind, held) for tid, held in rows]
    if not found:
        return []
    grants = NameDelegation.all_tenants.filter(grantee_id=tenant_id, tenant_id__in={t for t, _, _ in found})
    granted = [(g.tenant_id, g.name) for g in grants]
    return [f for f in found if not any(f[0] == tid and within(name, tree) for tid, tree in granted)]


def held_by(tenant_id, name: str, *, under_only: bool = False) -> list[tuple[str, str]]:
    """(kind, name) of ``tenant_id``'s own holdings related to ``name`` (or only those within it)."""
    out = []
    for holder in HOLDERS:
        q = Q(**{f"{holder.field}__endswith": "." + base(name)}) | Q(**{holder.field: base(name)})
        rows = holder.model.all_tenants.filter(holder.holds).filter(tenant_id=tenant_id)
        rows = rows.filter(q if under_only else _related_q(name, holder.field))
        out += [(holder.kind, held) for held in rows.values_list(holder.field, flat=True)]
    return out


def check_shape(name: str, *, field: str = "name") -> str:
    """The canonical name, or a 400 when it is a bare public suffix (it would capture everyone's)."""
    name = canonical(name)
    if is_public_suffix(name):
        raise InvalidInput(f"{base(name)} is a public suffix: nobody can hold it, only names under it.",
                           field=field)  # fmt: skip
    return name


def claim(tenant, names: Iterable[str], *, field: str = "name") -> list[str]:
    """Check that ``tenant`` may take every one of ``names``, and hold the lock that keeps it so
    until the caller's transaction ends. Call it in that transaction, before the insert."""
    tenant_id = getattr(tenant, "pk", tenant)
    wanted = [check_shape(n, field=field) for n in names]
    lock(wanted)
    for name in wanted:
        if held_by_others(tenant_id, name):
            raise Conflict(f"{name} (or a name above or under it) is held by another account on this platform.",
                           code="name_taken")  # fmt: skip
    return wanted
