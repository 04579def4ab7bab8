"""Reading and enforcing tenant security policies (every request, not only at login)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from django.utils import timezone
from rest_framework import exceptions

from apps.accounts.authentication import LAST_USED_GRANULARITY
from apps.accounts.models import AuthToken
from apps.common import context
from apps.common.exceptions import Forbidden
from apps.tenancy.models import Membership
from apps.tenancy.resolution import preloaded_tenant_row

from .mfa import has_2fa
from .models import ApiToken, SecurityPolicy, SessionTenantUse

DEFAULT_MIN_PASSWORD_LENGTH = 10


def parse_cidrs(values, field: str) -> list[str]:
    """Normalised CIDR strings, or a 400 naming the bad entry."""
    if values is None:
        return []
    if not isinstance(values, list):
        raise exceptions.ValidationError({field: ["Expected a list of addresses or CIDR networks."]})
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(str(value).strip(), strict=False)))
        except ValueError as exc:
            raise exceptions.ValidationError({field: [f"Not an address or CIDR network: {value!r}."]}) from exc
    if len(out) > 100:
        raise exceptions.ValidationError({field: ["At most 100 entries."]})
    return out


def ip_allowed(ip: str | None, cidrs: list[str]) -> bool:
    if not cidrs:
        return True
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        if addr.version == net.version and addr in net:
            return True
    return False


def policy_of(tenant) -> SecurityPolicy | None:
    return SecurityPolicy.all_tenants.filter(tenant=tenant).first()


def policies_of_user(user) -> list[SecurityPolicy]:
    tenant_ids = Membership.objects.filter(user=user).values("tenant_id")
    return list(SecurityPolicy.all_tenants.filter(tenant_id__in=tenant_ids))


def min_password_length_for(user) -> int:
    """The minimum a new password of ``user`` must meet: the longest among the tenants the user belongs
    to (each joined by accepting an invitation), never below the platform's default. One password
    serves every tenant, so it is checked when it is set, against all of them; a tenant raising its
    minimum later (or a member joining with an older password) asks for nothing retroactively."""
    lengths = [p.min_password_length for p in policies_of_user(user)]
    return max([DEFAULT_MIN_PASSWORD_LENGTH, *lengths])


def _policy_for_request(request, tenant) -> SecurityPolicy | None:
    """The tenant's policy, read once per request (the checks may run twice, e.g. tenant settings)."""
    django_request = getattr(request, "_request", request)
    cached = getattr(django_request, "_mpanel_policies", None)
    if cached is None:
        cached = django_request._mpanel_policies = {}
    if tenant.pk not in cached:
        # Usually loaded with the credentials in authentication's one query (resolution.TENANT_ROWS).
        found, policy = preloaded_tenant_row(request, "security_policy", tenant.pk)
        cached[tenant.pk] = policy if found else policy_of(tenant)
    return cached[tenant.pk]


def SessionRefused(message: str) -> exceptions.AuthenticationFailed:
    # A 401 with a code: the session still works elsewhere, so clients can tell this from a dead one.
    return exceptions.AuthenticationFailed({"detail": message, "code": "tenant_session_expired"})


def check_session_in_tenant(token: AuthToken, policy: SecurityPolicy) -> None:
    """A tenant's session limits govern a session only while it acts in that tenant (401 there,
    ``tenant_session_expired``); the same session keeps working in the user's other tenants and on
    the account's own routes. Idle time in a tenant runs from the session's last request there, or,
    when it made none since the tenant set its timeout, from its start or from the policy's last
    change, whichever is later. A refused request is no use: it does not restart the clock."""
    now = timezone.now()
    lifetime = policy.session_max_lifetime_hours
    if lifetime and token.created_at + timedelta(hours=lifetime) < now:
        raise SessionRefused("This session is older than this tenant's policy allows: sign in again.")
    if not policy.session_idle_timeout_minutes:
        return
    uses = SessionTenantUse.objects.filter(session=token, tenant_id=policy.tenant_id)
    last = uses.values_list("last_used_at", flat=True).first()
    since = last or max(token.created_at, policy.updated_at)
    if since + timedelta(minutes=policy.session_idle_timeout_minutes) < now:
        raise SessionRefused("This session was idle in this tenant for longer than its policy allows: sign in again.")
    if last is None:
        SessionTenantUse.objects.bulk_create(
            [SessionTenantUse(session=token, tenant_id=policy.tenant_id, last_used_at=now)], ignore_conflicts=True
        )
    elif now - last > LAST_USED_GRANULARITY:
        # Written at most once a minute, so that reads do not turn into writes.
        uses.update(last_used_at=now)


def MfaEnrollmentRequired() -> Forbidden:
    return Forbidden(
        "This tenant requires two-factor authentication: turn it on at /api/v1/security/me/.",
        code="mfa_enrollment_required",
    )


def AddressNotAllowed() -> Forbidden:
    return Forbidden("Your address is not in this tenant's API allowlist.", code="ip_not_allowed")


def check_tenant_request(request, ctx) -> None:
    """Runs for every request made in a tenant, right after the tenant is resolved."""
    if ctx.tenant is None:
        return
    policy = _policy_for_request(request, ctx.tenant)
    if policy is None:
        return
    if not ip_allowed(context.current().ip, policy.ip_allowlist):
        raise AddressNotAllowed()
    token = request.auth
    if isinstance(token, AuthToken):
        check_session_in_tenant(token, policy)
    days = policy.token_max_lifetime_days
    if isinstance(token, ApiToken) and days and token.created_at + timedelta(days=days) < timezone.now():
        raise exceptions.AuthenticationFailed("This API token is older than the tenant's policy allows.")
    if policy.require_2fa and not has_2fa(request.user):
        raise MfaEnrollmentRequired()
