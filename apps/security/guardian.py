"""Guardian: security checks over a tenant's resources, run as jobs, recorded as findings.

Each module registers its checks: ``@check("name", severity=..., title=...)`` on a function that
takes the tenant and yields ``Hit``s. A scan runs every check (inside the tenant's scope), updates
the unresolved finding of each hit (never a second one), opens new ones, and resolves the
unresolved findings of the checks that ran whose resource no longer hits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.audit import services as audit
from apps.common.exceptions import Conflict
from apps.jobs import services as jobs
from apps.jobs.registry import handler
from apps.tenancy.models import Membership
from apps.tenancy.roles import Role

from .models import ApiToken, FindingStatus, GuardianFinding, SecurityPolicy, Severity

UNUSED_TOKEN_DAYS = 90


@dataclass(frozen=True)
class Hit:
    resource_type: str
    resource_id: str
    resource_repr: str = ""
    evidence: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str
    severity: str
    title: str
    fn: Callable[..., Iterable[Hit]]


CHECKS: dict[str, Check] = {}


def check(name: str, *, severity: str, title: str):
    def decorator(fn):
        if name in CHECKS and CHECKS[name].fn is not fn:
            raise ValueError(f"A Guardian check {name!r} is registered already.")
        CHECKS[name] = Check(name=name, severity=Severity(severity).value, title=title, fn=fn)
        return fn

    return decorator


# --- the checks of the security center ------------------------------------------------------------


def _members_without_2fa(tenant, roles=None):
    with_device = TOTPDevice.objects.filter(confirmed=True).values("user_id")
    members = Membership.objects.filter(tenant=tenant).exclude(user_id__in=with_device).select_related("user")
    if roles:
        members = members.filter(role__in=roles)
    return members


@check("members_without_2fa", severity="high", title="Member without 2FA although the policy requires it")
def members_without_2fa(tenant):
    policy = SecurityPolicy.objects.filter(tenant=tenant).first()
    if policy is None or not policy.require_2fa:
        return
    for m in _members_without_2fa(tenant):
        yield Hit("accounts.user", str(m.user_id), m.user.email, {"role": m.role})


@check("owners_without_2fa", severity="high", title="Owner without two-factor authentication")
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


@check("tokens_without_expiry", severity="medium", title="API token that never expires")
def tokens_without_expiry(tenant):
    for t in _live_tokens(tenant).filter(expires_at__isnull=True):
        yield Hit("security.apitoken", str(t.pk), f"{t.name} ({t.prefix}…)", {"user": t.user.email})


@check("tokens_unused", severity="low", title=f"API token unused for {UNUSED_TOKEN_DAYS} days")
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


@transaction.atomic
def scan(*, tenant, checks: list[str] | None = None) -> dict:
    """Runs the checks (all by default) for the tenant in scope; idempotent."""
    now = timezone.now()
    summary = {"opened": 0, "updated": 0, "resolved": 0}
    for chk in [CHECKS[name] for name in (checks or sorted(CHECKS))]:
        existing = {
            (f.resource_type, f.resource_id): f
            for f in GuardianFinding.objects.select_for_update()
            .filter(tenant=tenant, check_name=chk.name)
            .exclude(status=FindingStatus.RESOLVED)
        }
        seen = set()
        for hit in chk.fn(tenant) or ():
            key = (hit.resource_type, hit.resource_id)
            if key in seen:
                continue
            seen.add(key)
            finding = existing.get(key)
            if finding is None:
                GuardianFinding.objects.create(
                    tenant=tenant,
                    check_name=chk.name,
                    severity=chk.severity,
                    title=chk.title,
                    resource_type=hit.resource_type,
                    resource_id=hit.resource_id,
                    resource_repr=hit.resource_repr[:200],
                    evidence=hit.evidence,
                    first_seen_at=now,
                    last_seen_at=now,
                )
                summary["opened"] += 1
            else:
                finding.last_seen_at = now
                finding.evidence = hit.evidence
                finding.resource_repr = hit.resource_repr[:200]
                finding.save(update_fields=["last_seen_at", "evidence", "resource_repr", "updated_at"])
                summary["updated"] += 1
        gone = [f.pk for key, f in existing.items() if key not in seen]
        if gone:
            GuardianFinding.objects.filter(pk__in=gone).update(
                status=FindingStatus.RESOLVED, resolved_at=now, updated_at=now
            )
            summary["resolved"] += len(gone)
    if any(summary.values()):
        audit.record(
            action="guardian.scan",
            tenant=tenant,
            actor=None,
            object_type="security.guardianfinding",
            changes={k: [0, v] for k, v in summary.items()},
        )
    return summary


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
