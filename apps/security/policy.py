"""Reading and enforcing tenant security policies (every request, not only at login)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from rest_framework import exceptions

from apps.common.exceptions import Forbidden
from apps.tenancy.models import Membership

from .models import ApiToken, SecurityPolicy

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


@dataclass(frozen=True)
class SessionLimits:
    idle: timedelta | None
    lifetime: timedelta | None


def strictest_session_limits(policies) -> SessionLimits:
    idle = [p.session_idle_timeout_minutes for p in policies if p.session_idle_timeout_minutes]
    life = [p.session_max_lifetime_hours for p in policies if p.session_max_lifetime_hours]
    return SessionLimits(
        idle=timedelta(minutes=min(idle)) if idle else None,
        lifetime=timedelta(hours=min(life)) if life else None,
    )


def min_password_length_for(user) -> int:
    lengths = [p.min_password_length for p in policies_of_user(user)]
    return max([DEFAULT_MIN_PASSWORD_LENGTH, *lengths])


def _cached_policies(request, user) -> dict:
    """The policies of the user's tenants, read once per request."""
    django_request = getattr(request, "_request", request)
    cached = getattr(django_request, "_mpanel_policies", None)
    if cached is None or cached[0] != user.pk:
        cached = (user.pk, {p.tenant_id: p for p in policies_of_user(user)})
        django_request._mpanel_policies = cached
    return cached[1]


def check_session(token, request) -> None:
    """A bearer session is refused once it is older or idler than the strictest policy of the
    user's tenants allows (sessions belong to the account, not to one tenant)."""
    limits = strictest_session_limits(_cached_policies(request, token.user).values())
    now = timezone.now()
    if limits.lifetime and token.created_at + limits.lifetime < now:
        raise exceptions.AuthenticationFailed("This session reached the maximum lifetime set by your tenant's policy.")
    last = token.last_used_at or token.created_at
    if limits.idle and last + limits.idle < now:
        raise exceptions.AuthenticationFailed("This session was idle for longer than your tenant's policy allows.")


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
    from apps.common import context

    from .mfa import has_2fa

    policy = _cached_policies(request, request.user).get(ctx.tenant.pk)
    if policy is None:
        return
    if not ip_allowed(context.current().ip, policy.ip_allowlist):
        raise AddressNotAllowed()
    token = request.auth
    days = policy.token_max_lifetime_days
    if isinstance(token, ApiToken) and days and token.created_at + timedelta(days=days) < timezone.now():
        raise exceptions.AuthenticationFailed("This API token is older than the tenant's policy allows.")
    if policy.require_2fa and not has_2fa(request.user):
        raise MfaEnrollmentRequired()
