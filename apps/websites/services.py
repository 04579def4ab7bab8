"""Website writes: validation, placement on a web node, the state machine and convergence.

Placement: without an explicit ``node``, among the tenant's ``active`` nodes with the ``web``
role the one with the fewest live websites (then the lowest hostname). Every change that the node
must see stores a website.* job in the same transaction (docs/api.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.limits import check_limit
from apps.common.locks import advisory_xact_lock
from apps.common.registry import Registry
from apps.jobs.lifecycle import Lifecycle, Move
from apps.jobs.models import Job
from apps.names import claims
from apps.nodes.drivers import driver_for
from apps.nodes.models import Node, NodeStatus, Transport, with_role

from . import validators
from .models import Website, WebsiteDomain, WebsiteStatus

LIVE = [s for s in WebsiteStatus.values if s != WebsiteStatus.DELETED]

# The site's state machine: what the tenant may ask for, from where, and what each job converges an
# ``error`` site to when it is retried. Moves audit and enqueue ``website.<name>``.
sites: Lifecycle[Website] = Lifecycle(
    model=Website,
    kind="website",
    payload_key="website",
    noun="website",
    moves={
        "suspend": Move(
            to=WebsiteStatus.SUSPENDED,
            sources={WebsiteStatus.ACTIVE, WebsiteStatus.PENDING},
            refusal="Only an active website can be suspended; this one is {status}.",
        ),
        "resume": Move(
            to=WebsiteStatus.ACTIVE,
            sources={WebsiteStatus.SUSPENDED},
            refusal="Only a suspended website can be resumed; this one is {status}.",
        ),
        "delete": Move(
            to=WebsiteStatus.DELETING,
            not_from={WebsiteStatus.DELETING, WebsiteStatus.DELETED},
            refusal="This website is {status} already.",
        ),
    },
    job_targets={
        "website.provision": WebsiteStatus.ACTIVE,
        "website.update": WebsiteStatus.ACTIVE,
        "website.resume": WebsiteStatus.ACTIVE,
        "website.suspend": WebsiteStatus.SUSPENDED,
        "website.delete": WebsiteStatus.DELETING,
    },
)


def normalise_domains(primary, aliases) -> tuple[str, list[str]]:
    primary = claims.check_shape(validators.hostname(primary, field="primary_domain"), field="primary_domain")
    if not isinstance(aliases, list) or len(aliases) > 99:
        raise InvalidInput("A list of at most 99 hostnames.", field="aliases")
    seen = {primary}
    out = []
    for alias in aliases:
        name = claims.check_shape(validators.hostname(alias, field="aliases"), field="aliases")
        if name in seen:
            raise InvalidInput(f"{name} is named twice.", field="aliases")
        seen.add(name)
        out.append(name)
    return primary, out


def _claim_domains(site: Website) -> None:
    """The site's hostnames, unique across the platform (the database's unique index decides races).
    A hostname it did not have yet must also sit in no other tenant's tree (apps/names/claims.py)."""
    wanted = set(site.domains)
    held = set(WebsiteDomain.all_tenants.filter(website=site).values_list("name", flat=True))
    claims.claim(site.tenant_id, sorted(wanted - held))
    taken = (
        WebsiteDomain.all_tenants.filter(name__in=wanted).exclude(website=site).values_list("name", flat=True).first()
    )
    if taken:
        raise Conflict(f"The hostname {taken} is used by another website.", code="domain_taken")
    WebsiteDomain.all_tenants.filter(website=site).exclude(name__in=wanted).delete()
    have = set(WebsiteDomain.all_tenants.filter(website=site).values_list("name", flat=True))
    try:
        with transaction.atomic():
            for name in sorted(wanted - have):
                WebsiteDomain.all_tenants.create(
                    tenant_id=site.tenant_id, website=site, name=name, is_primary=name == site.primary_domain
                )
            rows = WebsiteDomain.all_tenants.filter(website=site)
            rows.exclude(name=site.primary_domain).update(is_primary=False)
            rows.filter(name=site.primary_domain).update(is_primary=True)
    except IntegrityError as exc:
        raise Conflict("One of these hostnames is used by another website.", code="domain_taken") from exc


def _pick_node(node: Node | None) -> Node:
    if node is not None:
        if node.status != NodeStatus.ACTIVE or "web" not in (node.roles or []):
            raise InvalidInput("The node must be active and have the 'web' role.", field="node")
        return node
    candidates = (
        Node.objects.filter(with_role("web"), status=NodeStatus.ACTIVE)
        .annotate(live=Count("websites", filter=~Q(websites__status=WebsiteStatus.DELETED)))
        .order_by("live", "hostname")
    )
    chosen = candidates.first()
    if chosen is None:
        raise Conflict("No active node with the 'web' role.", code="no_web_node")
    return chosen


def _check_php_on_node(site: Website) -> None:
    """A PHP version the node said (at its last heartbeat) it does not have is refused up front."""
    offered = (site.node.reported or {}).get("php_versions")
    if site.php_version and isinstance(offered, list) and site.php_version not in offered:
        have = ", ".join(offered) or "none"
        raise InvalidInput(f"PHP {site.php_version} is not installed on {site.node.hostname} ({have}).",
                           field="php_version")  # fmt: skip


def _clean_settings(data: dict, site: Website) -> dict:
    out = {}
    if "customer" in data:
        out["customer"] = data["customer"]
    if "system_user" in data:
        out["system_user"] = validators.system_user(data["system_user"], site.system_user)
    if "document_root" in data:
        out["document_root"] = validators.document_root(data["document_root"])
    if "php_version" in data:
        out["php_version"] = validators.php_version(data["php_version"])
    for flag in ("https", "redirect_https"):
        if flag in data:
            out[flag] = bool(data[flag])
    if "www_redirect" in data:
        out["www_redirect"] = data["www_redirect"]
    if "redirects" in data:
        out["redirects"] = validators.redirects(data["redirects"])
    if "error_pages" in data:
        out["error_pages"] = validators.error_pages(data["error_pages"])
    https = out.get("https", site.https)
    if out.get("redirect_https", site.redirect_https) and not https:
        raise InvalidInput("Redirecting to HTTPS needs HTTPS on.", field="redirect_https")
    if out.get("www_redirect", site.www_redirect) != "none" and site.primary_domain.startswith("*."):
        raise InvalidInput("A wildcard site has no www form to redirect to.", field="www_redirect")
    return out


def _check_user_free_on_machine(site: Website) -> None:
    """Every ``local`` node is this one machine with one /etc/passwd: a Unix user another tenant's
    live site runs as there is taken too (the node would refuse to share it, and the site would be
    left in ``error``). Checked under the same advisory lock as the DNS and mail names."""
    if site.node.transport != Transport.LOCAL:
        return
    advisory_xact_lock([f"websites.system_user:{site.system_user}"])
    if (
        Website.all_tenants.filter(node__transport=Transport.LOCAL, system_user=site.system_user)
        .exclude(status=WebsiteStatus.DELETED)
        .exclude(pk=site.pk)
        .exists()
    ):
        raise Conflict(f"The system user {site.system_user} is taken on this server.", code="system_user_taken")


@transaction.atomic
def website_create(*, tenant, primary_domain: str, aliases: list | None = None, node: Node | None = None,
                   actor=None, **data) -> Website:  # fmt: skip
    primary, alias_list = normalise_domains(primary_domain, aliases or [])
    site_pk = uuid.uuid4()
    site = Website(
        id=site_pk,
        tenant=tenant,
        primary_domain=primary,
        aliases=alias_list,
        site_id=f"w{site_pk.hex}",
        system_user=f"web{site_pk.hex[:8]}",
    )
    for field, value in _clean_settings(data, site).items():
        setattr(site, field, value)
    site.node = _pick_node(node)
    _check_php_on_node(site)
    if (
        Website.objects.filter(node=site.node, system_user=site.system_user)
        .exclude(status=WebsiteStatus.DELETED)
        .exists()
    ):
        raise Conflict(f"The system user {site.system_user} is taken on this node.", code="system_user_taken")
    _check_user_free_on_machine(site)
    try:
        with transaction.atomic():
            site.save(force_insert=True)
    except IntegrityError as exc:  # a concurrent create took the same user name on this node
        raise Conflict(f"The system user {site.system_user} is taken on this node.", code="system_user_taken") from exc
    _claim_domains(site)
    # The customer's plan limits (apps.common.limits): last, with the row saved, so it is counted.
    check_limit(site.tenant_id, "websites", customer_id=site.customer_id, obj=site)
    audit.created(site, "website.create", actor=actor)
    _job(site, "website.provision", actor)
    for hook in CREATED:
        hook(site)
    return site


def _job(site: Website, job_type: str, actor) -> Job:
    # One seam for the job of a create or an update (tests/platform/test_crash.py drops the connection here).
    return sites.enqueue(site, job_type, actor=actor)


def website_resync(*, website: Website, actor=None) -> Job:
    """Converge the node again with the site's current settings (e.g. its Shield rules changed)."""
    return _job(website, "website.update", actor)


@transaction.atomic
def website_update(*, website: Website, data: dict, actor=None) -> Website:
    site = sites.locked(website)
    if site.status in (WebsiteStatus.DELETING, WebsiteStatus.DELETED):
        raise Conflict(f"A {site.status} website cannot be changed.")
    customer_before = site.customer_id
    with audit.change(site, "website.update", actor=actor) as change:
        if "primary_domain" in data or "aliases" in data:
            site.primary_domain, site.aliases = normalise_domains(
                data.get("primary_domain", site.primary_domain), data.get("aliases", site.aliases)
            )
        if "system_user" in data and validators.system_user(data["system_user"], site.system_user) != site.system_user:
            raise InvalidInput("The system user is fixed when the website is created.", field="system_user")
        for field, value in _clean_settings(data, site).items():
            setattr(site, field, value)
        _check_php_on_node(site)
        if audit.snapshot(site) == change.before:
            change.skip()  # nothing changed: no write, no event, no job
            return site
        site.save()
        _claim_domains(site)
        moved = site.customer_id != customer_before  # a site given to a customer counts in its plan
        check_limit(site.tenant_id, "websites" if moved else "website_settings", customer_id=site.customer_id, obj=site)
    _job(site, "website.update", actor)
    return site


def website_suspend(*, website: Website, actor=None) -> Website:
    return sites.move(website, "suspend", actor=actor)


def website_resume(*, website: Website, actor=None) -> Website:
    return sites.move(website, "resume", actor=actor)


@transaction.atomic
def website_delete(*, website: Website, actor=None, revoke_certificates: bool | None = None) -> Website:
    """The vhost goes at once (a job); the files after ``WEBSITE_PURGE_GRACE_SECONDS``. The
    hostnames are free again at once. ``revoke_certificates``: the site's certificates are revoked
    at their CA too (None: as the tenant's setting says; the SSL module's ``DELETED`` hook)."""
    site = sites.move(website, "delete", actor=actor)
    WebsiteDomain.all_tenants.filter(website=site).delete()
    for hook in DELETED:
        hook(site, actor=actor, revoke_certificates=revoke_certificates)
    return site


# What other modules do when a website is made or deleted, in the same transaction (they register
# here; websites never imports them): hosting issues a certificate for a plan with SSL, the SSL
# module revokes the site's certificates when the tenant asks.
CREATED: Registry[Callable[[Website], Any]] = Registry("website created hook")
DELETED: Registry[Callable[..., Any]] = Registry("website deleted hook")


# --- convergence (job handlers call this with the row locked) ---------------------------------


# What other modules add to the spec a node renders a site's vhost from: key -> part(site) -> its value
# (JSON-ready). The security center adds "shield", the firewall rules of the site (apps/security/hooks.py).
SPEC_PARTS: Registry[Callable[[Website], Any]] = Registry("website spec part")


def site_spec(site: Website, status: str) -> dict:
    parts = {key: part(site) for key, part in SPEC_PARTS.items()}
    return {
        "id": site.site_id,
        "domains": site.domains,
        "status": status,
        "document_root": site.document_root,
        "php_version": site.php_version or None,
        "https": site.https,
        "redirect_https": site.redirect_https,
        "www_redirect": site.www_redirect,
        "error_pages": site.error_pages,
        "redirects": site.redirects,
        "system_user": site.system_user,
        **parts,
    }


def website_converge(*, site: Website, job_type: str) -> dict:
    """Make the node match the site's wanted state, with the site's row locked (``sites.locked``)."""
    wanted = sites.wanted(site, job_type)
    if wanted is None:  # an error site this job has no target for, or a deleted one
        return {"skipped": site.status}
    driver = driver_for(site.node)
    if wanted == WebsiteStatus.DELETING:
        result = driver.site_remove(site.site_id)
        now = timezone.now()
        purge_after = now + timedelta(seconds=settings.WEBSITE_PURGE_GRACE_SECONDS)
        sites.converged(site, WebsiteStatus.DELETED, deleted_at=now, purge_after=purge_after)
        job = sites.enqueue(site, "website.purge", key=f"website.purge:{site.pk}")
        Job.all_tenants.filter(pk=job.pk).update(run_after=purge_after)
        return {**result, "purge_after": purge_after.isoformat()}
    status = "suspended" if wanted == WebsiteStatus.SUSPENDED else "active"
    result = driver.site_ensure(site_spec(site, status))
    reached = wanted if wanted != WebsiteStatus.PENDING else WebsiteStatus.ACTIVE
    sites.converged(site, reached, certificate=result.get("certificate") or {})
    return result


def website_purge(*, site: Website) -> dict:
    if site.status != WebsiteStatus.DELETED:
        return {"skipped": site.status}
    return driver_for(site.node).site_purge(site.site_id, site.system_user)
