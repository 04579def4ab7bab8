"""Which tenant a request acts in, and with which role (docs/api.md). Decided once per request."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import Model, OuterRef, Subquery
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


# name -> model with at most one row per tenant (a unique ``tenant``) that every tenant request reads (the
# security center's policy). Authentication loads those rows in its one query (``tenant_row_annotations``)
# and the owner reads them back with ``preloaded_tenant_row`` instead of a query of its own per request.
TENANT_ROWS: Registry[type[Model]] = Registry("tenant row")


def register_request_check(check: Callable[[Any, TenantContext], None]) -> Callable[[Any, TenantContext], None]:
    """Add ``check`` to ``REQUEST_CHECKS`` (again: a no-op); usable as a decorator."""
    return REQUEST_CHECKS.register()(check)


@dataclass(frozen=True)
class TenantContext:
    tenant: Tenant | None
    role: Role | None


NONE = TenantContext(tenant=None, role=None)


def header_tenant_id(request) -> uuid.UUID | None:
    """The tenant the ``X-Tenant-ID`` header names, or ``None`` (absent or malformed: ``resolve`` answers)."""
    raw = request.headers.get(HEADER)
    if not raw:
        return None
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        return None


def _django_request(request):
    return getattr(request, "_request", request)


def tenant_row_annotations(tenant_ref: str = "tenant_id") -> dict:
    """Annotations loading every ``TENANT_ROWS`` row of the tenant in ``tenant_ref`` into the caller's query,
    one scalar subquery per column over the unique tenant index (one statement, converted as the field is)."""
    out = {}
    for name, model in TENANT_ROWS.items():
        rows = model._base_manager.filter(tenant_id=OuterRef(tenant_ref))
        for field in model._meta.concrete_fields:
            out[f"mprow_{name}_{field.attname}"] = Subquery(rows.values(field.attname)[:1], output_field=field)
    return out


def preload(request, membership: Membership) -> None:
    """Keep the membership (with its tenant, and the ``TENANT_ROWS`` annotated on it) that authentication
    read in the same query as the credentials: ``resolve`` uses it instead of reading it again. Nothing
    outlives the request, so a removed member or a revoked token is refused on the next request."""
    django_request = _django_request(request)
    django_request._mpanel_membership = membership
    rows = getattr(django_request, "_mpanel_tenant_rows", None)
    if rows is None:
        rows = django_request._mpanel_tenant_rows = {}
    for name, model in TENANT_ROWS.items():
        names = [f.attname for f in model._meta.concrete_fields]
        values = [getattr(membership, f"mprow_{name}_{attname}", None) for attname in names]
        pk = values[names.index(model._meta.pk.attname)]
        row = None if pk is None else model.from_db(model._base_manager.db, names, values)
        rows[(name, membership.tenant_id)] = row


def preload_memberships(request, memberships: list[Membership]) -> None:
    """The caller's memberships (at most two: as ``resolve`` reads them when no tenant is named), read by
    authentication in the query of the credentials."""
    _django_request(request)._mpanel_memberships = memberships


def preloaded_tenant_row(request, name: str, tenant_id) -> tuple[bool, Model | None]:
    """``(True, row or None)`` when authentication loaded the row ``name`` of ``tenant_id``, else ``(False, None)``."""
    rows = getattr(_django_request(request), "_mpanel_tenant_rows", None) or {}
    key = (name, tenant_id)
    return (True, rows[key]) if key in rows else (False, None)


def _membership(request, user, tenant_id) -> Membership | None:
    held = getattr(_django_request(request), "_mpanel_membership", None)
    if held is not None and held.user_id == user.pk and str(held.tenant_id) == str(tenant_id):
        return held
    return Membership.objects.select_related("tenant").filter(user=user, tenant_id=tenant_id).first()


def resolve(request, url_tenant_id=None) -> TenantContext:
    """``url_tenant_id`` is set by views addressed as ``/tenants/{id}/…``; it wins over the header."""
    user = request.user
    if not user or not user.is_authenticated:
        return NONE
    token = request.auth
    bound_tenant_id = getattr(token, "tenant_id", None)
    if bound_tenant_id is not None:
        # A personal API token names its tenant and its ceiling; the header is ignored.
        membership = _membership(request, user, bound_tenant_id)
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
        membership = _membership(request, user, tenant_id)
        if membership is None:
            # Same answer as for a tenant that does not exist: membership elsewhere is not leaked.
            raise exceptions.NotFound("Tenant not found.")
        return _checked(membership.tenant, Role(membership.role))

    held = getattr(_django_request(request), "_mpanel_memberships", None)
    if held is not None and all(m.user_id == user.pk for m in held):
        memberships = held
    else:
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
