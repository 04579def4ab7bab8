"""Writing audit events. Every service that mutates records inside its transaction.

What is recorded of a row is declared once, on its model: ``audit_fields = ("name", "status", …)``
(absent: every concrete field). Services then say only what happened:

    audit.created(pod, "cloudpod.create", actor=actor)
    with audit.change(pod, "cloudpod.update", actor=actor):
        pod.name = name
        pod.save()
    audit.deleted(rate, "taxrate.delete", actor=actor)   # before the row goes

``record`` stays for events that are not a row's before/after (a link, a login, a batch).
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection, models
from django.utils import timezone
from psycopg.types.json import Jsonb

from apps.common import context, statements

from .models import AuditEvent

_UNSET = object()


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data (rows as their keys, decimals and times as text)."""
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # e.g. django-countries' Country


# A field whose name holds one of these words keeps a secret (or what proves one): never recorded.
_SECRET_WORDS = ("password", "secret", "key_hash", "token_hash")
# …unless the name says it is a figure or a time about the secret (min_password_length, secret_previous_until).
_NOT_SECRET_SUFFIXES = ("_length", "_at", "_until")
# ``snapshot(obj, ALL_FIELDS)``: every concrete field, whatever the model declares (the admin's default,
# where an operator may edit any field).
ALL_FIELDS = "__all__"


def is_secret(name: str) -> bool:
    return any(word in name for word in _SECRET_WORDS) and not name.endswith(_NOT_SECRET_SUFFIXES)


def audited_fields(model: type[models.Model] | models.Model) -> tuple[str, ...] | None:
    """The fields a model declares for its audit trail (``None``: all of its concrete fields)."""
    fields = getattr(model, "audit_fields", None)
    return tuple(fields) if fields is not None else None


def snapshot(obj: models.Model, fields: list[str] | tuple[str, ...] | str | None = None) -> dict[str, Any]:
    """The audited field values of ``obj`` as JSON-ready data (secrets excluded by name).

    ``fields`` defaults to the model's declared ``audit_fields``; ``ALL_FIELDS`` takes every field."""
    if fields is None:
        fields = audited_fields(obj)
    elif fields == ALL_FIELDS:
        fields = None
    out = {}
    for field in obj._meta.concrete_fields:
        if fields is not None and field.name not in fields:
            continue
        if is_secret(field.name):
            continue
        out[field.name] = plain(getattr(obj, field.attname))
    return out


def tenant_of(obj: models.Model | None) -> Any:
    """The tenant an event about ``obj`` belongs to: the row's ``tenant``, or the row itself when its
    model declares ``audit_is_tenant = True`` (a tenant's own events belong to it). Audit names no model
    of tenancy's: tenancy sits above it and records through it."""
    if obj is None:
        return None
    if getattr(obj, "audit_is_tenant", False):
        return obj
    return getattr(obj, "tenant", None)


def tenant_key(obj: models.Model | None) -> Any:
    """``tenant_of`` as the event stores it, from the row's ``tenant_id`` when it has one: an event
    needs the tenant's key only, and reading ``obj.tenant`` cost a query per audited change whenever
    the row came from the database without its tenant."""
    if obj is not None and not getattr(obj, "audit_is_tenant", False):
        tenant_id = getattr(obj, "tenant_id", _UNSET)
        if tenant_id is not _UNSET:
            return tenant_id
    tenant = tenant_of(obj)
    return getattr(tenant, "pk", tenant)


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, list[Any]]:
    before = before or {}
    after = after or {}
    keys = [k for k in {**before, **after} if k not in ("updated_at",)]
    return {k: [before.get(k), after.get(k)] for k in keys if before.get(k) != after.get(k)}


def build(
    *,
    action: str,
    obj: models.Model | None = None,
    tenant: Any = _UNSET,
    actor: Any = _UNSET,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    changes: dict[str, Any] | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
) -> AuditEvent:
    """The event ``record`` would write, unsaved: batch code collects them for one ``record_many``."""
    ctx = context.current()
    if actor is _UNSET:
        actor = ctx.actor
    if tenant is _UNSET:
        tenant = tenant_key(obj)
    if changes is None:
        changes = diff(before, after)
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    # An actor of another realm (a customer's portal user: ``audit_realm = "portal"``) is not a staff
    # ``User``: it is recorded by its label, with its realm as ``via``.
    realm = getattr(actor, "audit_realm", "") if actor is not None else ""
    actor_obj = actor if getattr(actor, "is_authenticated", False) and not realm else None
    return AuditEvent(
        tenant_id=getattr(tenant, "pk", tenant),
        actor=actor_obj,
        actor_email=(getattr(actor_obj, "email", "") or "") if not realm else getattr(actor, "audit_label", "")[:254],
        via=realm or ctx.via,
        action=action,
        object_type=object_type or "",
        object_id=object_id or "",
        object_repr=str(obj)[:200] if obj is not None else "",
        changes=plain(changes),
        request_id=ctx.request_id,
        ip=ctx.ip,
    )


class _System:
    """The platform acting on its own (a job's convergence, a registrar's answer): no actor is
    recorded, even when an eager job runs inside the request that enqueued it."""

    is_authenticated = False

    def __repr__(self) -> str:
        return "audit.SYSTEM"


SYSTEM = _System()


def by(actor: Any) -> dict[str, Any]:
    """``record(..., **audit.by(actor))``: a service's explicit actor when it was given one, else the
    request's. ``SYSTEM`` (or ``actor=None`` given to ``record`` itself) records no actor at all."""
    if actor is SYSTEM:
        return {"actor": None}
    return {"actor": actor} if actor is not None else {}


def created(
    obj: models.Model, action: str, *, actor: Any = None, marks: dict[str, Any] | None = None, **kwargs: Any
) -> AuditEvent:
    """A new row: its declared fields as the "after" (``actor`` as in ``by``), with ``marks``, what the
    fields cannot show (as ``Change.mark``: e.g. the years a domain is registered for)."""
    return record(action=action, obj=obj, after={**snapshot(obj), **(marks or {})}, **by(actor), **kwargs)


def deleted(obj: models.Model, action: str, *, actor: Any = None, **kwargs: Any) -> AuditEvent:
    """A row about to go (call before ``delete()``): its declared fields as the "before"."""
    return record(action=action, obj=obj, before=snapshot(obj), **by(actor), **kwargs)


class Change:
    """What ``change`` yields: ``skip()`` drops the event (e.g. the write turned out to change nothing)."""

    def __init__(self, before: dict[str, Any]) -> None:
        self.before = before
        self.skipped = False
        self.marks: dict[str, Any] = {}
        self.event: AuditEvent | None = None

    def skip(self) -> None:
        self.skipped = True

    def mark(self, **changes: Any) -> None:
        """Add to the "after" what the fields cannot show, e.g. ``mark(password="changed")`` (never
        the secret itself)."""
        self.marks.update(changes)


@contextmanager
def change(obj: models.Model, action: str, *, actor: Any = None, **kwargs: Any) -> Iterator[Change]:
    """Record ``action`` on ``obj`` with its declared fields before and after the block.

    Nothing is recorded when the block raises: the transaction that holds the write rolls back."""
    pending = Change(snapshot(obj))
    yield pending
    if not pending.skipped:
        after = {**snapshot(obj), **pending.marks}
        pending.event = record(action=action, obj=obj, before=pending.before, after=after, **by(actor), **kwargs)


def record(**kwargs: Any) -> AuditEvent:
    """Write one event (the arguments of ``build``): the row ``save`` would write, by a statement made
    once per process (every mutation of the product writes one; the ORM compiled its INSERT each time)."""
    return statements.save_new(build(**kwargs))


def record_many(events: list[AuditEvent]) -> list[AuditEvent]:
    """Write events made by ``build`` in one INSERT."""
    return AuditEvent.objects.bulk_create(events, batch_size=1000)


def snapshot_of(model: type[models.Model]) -> Callable[[models.Model], dict[str, Any]]:
    """``snapshot`` for many rows of ``model``: the declared fields and the secret check resolved once
    for the batch instead of per row (a billing batch snapshots each invoice twice); the same dicts."""
    declared = audited_fields(model)
    pairs = [
        (field.name, field.attname)
        for field in model._meta.concrete_fields
        if (declared is None or field.name in declared) and not is_secret(field.name)
    ]

    def take(obj: models.Model) -> dict[str, Any]:
        return {name: plain(getattr(obj, attname)) for name, attname in pairs}

    return take


def build_plain(
    *,
    action: str,
    obj: models.Model,
    tenant: Any,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """``build(action=, obj=, tenant=, before=, after=)`` when ``before`` and ``after`` are JSON-ready
    already (``snapshot``'s dicts; lists, text and numbers): the same event, by the context's actor,
    without converting the changes a second time (``plain`` of them was most of a batch's audit time).
    tests/billing/test_billing_run_copy.py compares the two."""
    return AuditEvent(**plain_values(action=action, obj=obj, tenant=tenant, before=before, after=after))


def plain_values(
    *,
    action: str,
    obj: models.Model,
    tenant: Any,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``build_plain``'s event as its field values, for ``insert_plain`` (no model instance per event)."""
    ctx = context.current()
    actor = ctx.actor
    realm = getattr(actor, "audit_realm", "") if actor is not None else ""
    actor_obj = actor if getattr(actor, "is_authenticated", False) and not realm else None
    return {
        "tenant_id": getattr(tenant, "pk", tenant),
        "actor_id": getattr(actor_obj, "pk", None),
        "actor_email": (getattr(actor_obj, "email", "") or "")
        if not realm
        else getattr(actor, "audit_label", "")[:254],
        "via": realm or ctx.via,
        "action": action,
        "object_type": obj._meta.label_lower,
        "object_id": str(obj.pk),
        "object_repr": str(obj)[:200],
        "changes": diff(before, after),
        "request_id": ctx.request_id,
        "ip": ctx.ip,
    }


# Tests turn it off to compare the two ways of ``insert_plain`` on PostgreSQL.
COPY_EVENTS = True
_COPY_COLUMNS = ("id", "created_at", "tenant_id", "actor_id", "actor_email", "via", "action", "object_type",
                 "object_id", "object_repr", "changes", "request_id", "ip")  # fmt: skip


def insert_plain(events: list[dict[str, Any]]) -> None:
    """Write events given as ``plain_values`` dicts, in the caller's transaction: one ``COPY`` on
    PostgreSQL (a billing batch writes three per invoice; ``record_many``'s INSERT spent most of its time
    quoting the values in Python), ``record_many`` elsewhere. The same rows: a new UUID and the time of
    writing each, as ``record_many`` gives them."""
    if not events:
        return
    if not (COPY_EVENTS and connection.vendor == "postgresql"):
        record_many([AuditEvent(**values) for values in events])
        return
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    sql = f"COPY {table} ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        for values in events:
            copy.write_row((uuid.uuid4(), timezone.now(), values["tenant_id"], values["actor_id"],
                            values["actor_email"], values["via"], values["action"], values["object_type"],
                            values["object_id"], values["object_repr"], Jsonb(values["changes"]),
                            values["request_id"], values["ip"]))  # fmt: skip
