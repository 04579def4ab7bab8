"""Which tenant a request acts in, and with which role (docs/api.md). Decided once per request."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rest_framework import exceptions

from apps.common.registry import Registry

from .models import Membership, Tenant
from .roles import Role, lowest

HEADER = "X-Tenant-ID"
# callable(request, TenantContext) run, in registration order, for every tenant API request once the
# tenant is known; raises to refuse it (the security center's policy: IP allowlist, required 2FA,
# token lifetime). Register with ``@REQUEST_CHECKS.register()`` or ``register_request_check(fn)``.
REQUEST_CHECKS: Registry[Callable[[Any, TenantContext], None]] = Registry("tenant request check")


# vouch(user, auth) -> bool: whether a request's credentials carry a platform operator's (``is_staff``)
# powers. Accounts vouches for a session whose login passed the admin's second factor
# (apps/accounts/operators.py). Every voucher must agree; with none registered nobody holds them (fail-closed).
OPERATOR_VOUCHERS: Registry[Callable[[Any, Any], bool]] = Registry("operator voucher")


def register_request_check(check: Callable[[Any, TenantContext], None]) -> Callable[[Any, TenantContext], None]:
    """Add ``check`` to ``REQUEST_CHECKS`` (again: a no-op); usable as a decorator."""
    return REQUEST_CHECKS.register()(check)


@dataclass(frozen=True)
class TenantContext:
    tenant: Tenant | None
    role: Role | None


NONE = TenantContext(tenant=None, role=None)


def resolve(request, url_tenant_id=None) -> TenantContext:
    """``url_tenant_id`` is set by views addressed as ``/tenants/{id}/…``; it wins over the header."""
    user = request.user
    if not user or not user.is_authenticated:
        return NONE
    token = request.auth
    bound_tenant_id = getattr(token, "tenant_id", None)
    if bound_tenant_id is not None:
        # A personal API token names its tenant and its ceiling; the header is ignored.
        membership = Membership.objects.select_related("tenant").filter(user=user, tenant_id=bound_tenant_id).first()
        if membership is None:
            raise exceptions.AuthenticationFailed("This token's owner no longer belongs to its tenant.")
        if token.created_at < membership.created_at:
            # Issued under an earlier membership that ended (removal revokes; this holds whatever way the
            # membership ended): joining again never revives it.
            raise exceptions.AuthenticationFailed("This token's owner no longer belongs to its tenant.")
        if url_tenant_id is not None and str(url_tenant_id) != str(bound_tenant_id):
            raise exceptions.NotFound("Tenant not found.")
        role = lowest(membership.role, getattr(token, "max_role", None))
        return _checked(membership.tenant, role)

    raw = str(url_tenant_id) if url_tenant_id is not None else request.headers.get(HEADER)
    if raw:
        try:
            tenant_id = uuid.UUID(raw.strip())
        except ValueError as exc:
            if url_tenant_id is not None:
                raise exceptions.NotFound("Tenant not found.") from exc
            raise exceptions.ValidationError({HEADER: ["Not a valid tenant id."]}) from exc
        membership = Membership.objects.select_related("tenant").filter(user=user, tenant_id=tenant_id).first()
        if membership is None:
            # Same answer as for a tenant that does not exist: membership elsewhere is not leaked.
            raise exceptions.NotFound("Tenant not found.")
        return _checked(membership.tenant, Role(membership.role))

    memberships = list(Membership.objects.select_related("tenant").filter(user=user)[:2])
    if not memberships:
        return NONE
    if len(memberships) > 1:
        raise exceptions.ValidationError({HEADER: ["Required: you belong to more than one tenant."]})
    return _checked(memberships[0].tenant, Role(memberships[0].role))


def wants_platform_view(request, url_tenant_id=None) -> bool:
    """An operator naming no tenant (no header, no URL tenant, no tenant-bound token) whose session
    passed the admin's second factor; without it an operator is a plain user here."""
    user = request.user
    return bool(
        user
        and user.is_authenticated
        and user.is_staff
        and url_tenant_id is None
        and not request.headers.get(HEADER)
        and getattr(request.auth, "tenant_id", None) is None
        and len(OPERATOR_VOUCHERS) > 0
        and all(vouch(user, request.auth) for vouch in OPERATOR_VOUCHERS)
    )


def _checked(tenant: Tenant, role: Role | None) -> TenantContext:
    if tenant.status != Tenant.Status.ACTIVE:
        raise exceptions.PermissionDenied("This tenant is suspended.")
    return TenantContext(tenant=tenant, role=role)
