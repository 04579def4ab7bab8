"""Guardian: security checks over a tenant's resources, run as jobs, recorded as findings.

Each module registers its checks on ``CHECKS`` (an ``apps.common.registry.Registry`` keyed by
name): ``@check("name", severity=..., title=..., remediation=...)`` on a function that takes the
tenant and yields ``Hit``s (a problem on one resource) and ``Unknown``s (a resource it could not
look at this time: its node did not answer). Adding a check is that one registration (its module
is imported by ``SecurityConfig.ready``, see ``hooks.py``); ``apps/security/checks.py`` holds the
hosting ones (files, PHP, databases, mail and DNS records, nodes). A scan (the ``guardian.scan``
job) runs every check inside the tenant's scope, each on its own: one that fails records its
(tenant-safe) error and leaves its findings as they were. For the others it updates the unresolved
finding of each hit (never a second one), opens new ones, and resolves the unresolved findings
whose resource no longer hits and was not ``Unknown``. Node calls happen before the short
transaction that writes the findings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.audit import services as audit
from apps.common.exceptions import Conflict
from apps.common.registry import Registry
from apps.jobs import services as jobs
from apps.jobs.errors import tenant_message
from apps.jobs.registry import handler
from apps.tenancy.models import Membership
from apps.tenancy.roles import Role

from .models import ApiToken, FindingStatus, GuardianCheckRun, GuardianFinding, SecurityPolicy, Severity

log = logging.getLogger(__name__)

UNUSED_TOKEN_DAYS = 90


@dataclass(frozen=True)
class Hit:
    resource_type: str
    resource_id: str
    resource_repr: str = ""
    evidence: dict = field(default_factory=dict)
    severity: str | None = None  # the check's unless given (e.g. "ending soon" is lower than "ended")
    remediation: str | None = None  # the check's unless given (e.g. naming the files to fix)


@dataclass(frozen=True)
class Unknown:
    """A resource the check could not look at this time: its findings stay as they are."""

    resource_type: str
    resource_id: str


@dataclass(frozen=True)
class Check:
    name: str
    severity: str
    title: str
    fn: Callable[..., Iterable[Hit | Unknown]]
    remediation: str = ""


CHECKS: Registry[Check] = Registry("Guardian check")


def check(name: str, *, severity: str, title: str, remediation: str = ""):
    """Registers the decorated function as the check ``name`` (another function under a taken name raises)."""

    def decorator(fn):
        held = CHECKS.get(name)
        if held is None or held.fn is not fn:
            chk = Check(name=name, severity=Severity(severity).value, title=title, fn=fn, remediation=remediation)
            CHECKS.register(name)(chk)
        return fn

    return decorator


# --- the checks of the security center ------------------------------------------------------------


def _members_without_2fa(tenant, roles=None):
    with_device = TOTPDevice.objects.filter(confirmed=True).values("user_id")
    members = Membership.objects.filter(tenant=tenant).exclude(user_id__in=with_device).select_related("user")
    if roles:
        members = members.filter(role__in=roles)
    return members


@check(
    "members_without_2fa",
    severity="high",
    title="Member without 2FA although the policy requires it",
    remediation="Ask the member to turn on two-factor authentication under /security/me/2fa/totp/ "
    "(until then the policy blocks them), or remove them from the tenant.",
)
def members_without_2fa(tenant):
    policy = SecurityPolicy.objects.filter(tenant=tenant).first()
    if policy is None or not policy.require_2fa:
        return
    for m in _members_without_2fa(tenant):
        yield Hit("accounts.user", str(m.user_id), m.user.email, {"role": m.role})


@check(
    "owners_without_2fa",
    severity="high",
    title="Owner without two-factor authentication",
    remediation="The owner turns on two-factor authentication under /security/me/2fa/totp/; "
    "then consider requiring it for everyone in the security policy.",
)
def owners_without_2fa(tenant):
    for m in _members_without_2fa(tenant, roles=[Role.OWNER]):
        yield Hit("accounts.user", str(m.user_id), m.user.email, {"role": m.role})


def _live_tokens(tenant):
    now = timezone.now()
    return (
        ApiToken.objects.filter(tenant=tenant, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("user")
    )


@check(
    "tokens_without_expiry",
    severity="medium",
    title="API token that never expires",
    remediation="Revoke the token and create one with an expiry date (the policy's "
    "token_max_lifetime_days can require one).",
)
def tokens_without_expiry(tenant):
    for t in _live_tokens(tenant).filter(expires_at__isnull=True):
        yield Hit("security.apitoken", str(t.pk), f"{t.name} ({t.prefix}…)", {"user": t.user.email})


@check(
    "tokens_unused",
    severity="low",
    title=f"API token unused for {UNUSED_TOKEN_DAYS} days",
    remediation="Revoke the token if nothing uses it any more.",
)
def tokens_unused(tenant):
    cutoff = timezone.now() - timedelta(days=UNUSED_TOKEN_DAYS)
    stale = _live_tokens(tenant).filter(
        Q(last_used_at__lt=cutoff) | Q(last_used_at__isnull=True, created_at__lt=cutoff)
    )
    for t in stale:
        yield Hit(
            "security.apitoken",
            str(t.pk),
            f"{t.name} ({t.prefix}…)",
            {"user": t.user.email, "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None},
        )


# --- scanning -----------------------------------------------------------------------------------------


def _collect(chk: Check, tenant) -> tuple[dict, set]:
    """Run one check (outside any transaction: it may ask nodes): its hits by resource, and the
    resources it could not look at."""
    hits: dict[tuple[str, str], Hit] = {}
    unknown: set[tuple[str, str]] = set()
    for item in chk.fn(tenant) or ():
        key = (item.resource_type, item.resource_id)
        if isinstance(item, Unknown):
            unknown.add(key)
        else:
            hits.setdefault(key, item)
    return hits, unknown - set(hits)


@transaction.atomic
def _apply(chk: Check, tenant, hits: dict, unknown: set, now) -> dict:
    summary = {"opened": 0, "updated": 0, "resolved": 0}
    existing = {
        (f.resource_type, f.resource_id): f
        for f in GuardianFinding.objects.select_for_update()
        .filter(tenant=tenant, check_name=chk.name)
        .exclude(status=FindingStatus.RESOLVED)
    }
    for key, hit in hits.items():
        severity = Severity(hit.severity).value if hit.severity else chk.severity
        remediation = hit.remediation if hit.remediation is not None else chk.remediation
        finding = existing.get(key)
        if finding is None:
            GuardianFinding.objects.create(
                tenant=tenant,
                check_name=chk.name,
                severity=severity,
                title=chk.title,
                resource_type=hit.resource_type,
                resource_id=hit.resource_id,
                resource_repr=hit.resource_repr[:200],
                evidence=hit.evidence,
                remediation=remediation,
                first_seen_at=now,
                last_seen_at=now,
            )
            summary["opened"] += 1
        else:
            finding.last_seen_at = now
            finding.evidence = hit.evidence
            finding.resource_repr = hit.resource_repr[:200]
            finding.severity = severity
            finding.remediation = remediation
            finding.save(
                update_fields=["last_seen_at", "evidence", "resource_repr", "severity", "remediation", "updated_at"]
            )
            summary["updated"] += 1
    gone = [f.pk for key, f in existing.items() if key not in hits and key not in unknown]
    if gone:
        GuardianFinding.objects.filter(pk__in=gone).update(
            status=FindingStatus.RESOLVED, resolved_at=now, updated_at=now
        )
        summary["resolved"] += len(gone)
    _record_run(tenant, chk, now, ok=not unknown, hits=len(hits), unknown=len(unknown))
    return summary


def _record_run(tenant, chk: Check, now, *, ok: bool, error: str = "", hits: int = 0, unknown: int = 0) -> None:
    GuardianCheckRun.objects.update_or_create(
        tenant=tenant,
        check_name=chk.name,
        defaults={"ran_at": now, "ok": ok and not error, "error": error, "hits": hits, "unknown": unknown},
    )


def scan(*, tenant, checks: list[str] | None = None) -> dict:
    """Runs the checks (all by default) for the tenant in scope; idempotent."""
    summary = {"opened": 0, "updated": 0, "resolved": 0, "failed": 0}
    for chk in [CHECKS[name] for name in (checks or sorted(CHECKS.keys()))]:
        now = timezone.now()
        try:
            hits, unknown = _collect(chk, tenant)
        except Exception as exc:
            # One broken check (a node down, a resolver away) must not hide the others' results.
            log.warning("guardian check %s failed for tenant %s", chk.name, tenant.pk, exc_info=exc)
            _record_run(tenant, chk, now, ok=False, error=tenant_message(exc))
            summary["failed"] += 1
            continue
        for key, value in _apply(chk, tenant, hits, unknown, now).items():
            summary[key] += value
    if any(summary[k] for k in ("opened", "updated", "resolved")):
        audit.record(
            action="guardian.scan",
            tenant=tenant,
            actor=None,
            object_type="security.guardianfinding",
            changes={k: [0, v] for k, v in summary.items()},
        )
    return summary


def checks_overview(*, tenant) -> list[dict]:
    """Every registered check with its last run for ``tenant`` and its open findings (two queries)."""
    runs = {r.check_name: r for r in GuardianCheckRun.objects.filter(tenant=tenant)}
    open_ = {
        row["check_name"]: row
        for row in GuardianFinding.objects.filter(tenant=tenant)
        .exclude(status=FindingStatus.RESOLVED)
        .values("check_name")
        .annotate(n=Count("pk"), latest=Max("first_seen_at"))
    }
    rows = []
    for chk in sorted(CHECKS, key=lambda c: c.name):
        run, found = runs.get(chk.name), open_.get(chk.name, {})
        rows.append(
            {
                "name": chk.name,
                "severity": chk.severity,
                "title": chk.title,
                "remediation": chk.remediation,
                "last_run_at": run.ran_at if run else None,
                "last_run_ok": run.ok if run else None,
                "last_error": run.error if run else "",
                "unknown": run.unknown if run else 0,
                "open_findings": found.get("n", 0),
                "latest_found_at": found.get("latest"),
            }
        )
    return rows


@handler("guardian.scan")
def scan_job(job):
    return scan(tenant=job.tenant, checks=job.payload.get("checks"))


def scan_enqueue(*, tenant, actor):
    return jobs.job_enqueue(tenant=tenant, type="guardian.scan", payload={}, actor=actor)  # audited there


@transaction.atomic
def finding_set_status(*, finding: GuardianFinding, status: str) -> GuardianFinding:
    finding = GuardianFinding.objects.select_for_update().get(pk=finding.pk)
    allowed = {
        FindingStatus.ACKNOWLEDGED: {FindingStatus.OPEN},
        FindingStatus.RESOLVED: {FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED},
    }[status]
    if finding.status not in allowed:
        raise Conflict(f"A finding that is {finding.status} cannot become {status}.", code="illegal_transition")
    before = finding.status
    finding.status = status
    finding.resolved_at = timezone.now() if status == FindingStatus.RESOLVED else None
    finding.save(update_fields=["status", "resolved_at", "updated_at"])
    audit.record(action=f"guardian.finding_{status}", obj=finding, changes={"status": [before, status]})
    return finding
