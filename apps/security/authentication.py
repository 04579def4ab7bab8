"""Personal API tokens ``mp_…`` as bearer credentials (registered with the accounts' resolver)."""

from __future__ import annotations

from rest_framework import exceptions

from apps.common import context

from .models import ApiToken, sha256


def _view_class(request):
    match = getattr(getattr(request, "_request", request), "resolver_match", None)
    func = getattr(match, "func", None)
    return getattr(func, "cls", None) or getattr(func, "view_class", None)


def resolve_api_token(raw: str, request):
    """An API token reaches only tenant APIs (never the account's own security, password or
    sessions), in its one tenant, with at most its role (``apps.tenancy.resolution``)."""
    from apps.tenancy.viewsets import TenantScopedViewSet

    token = ApiToken.all_tenants.select_related("user").filter(key_hash=sha256(raw)).first()
    if token is None or not token.is_live or not token.user.is_active:
        raise exceptions.AuthenticationFailed("Invalid, expired or revoked API token.")
    view = _view_class(request)
    if not (isinstance(view, type) and issubclass(view, TenantScopedViewSet)):
        raise exceptions.PermissionDenied("API tokens reach tenant APIs only; sign in to manage your account.")
    from .policy import ip_allowed

    ctx = context.current()
    if not ip_allowed(ctx.ip, token.allowed_ips):
        raise exceptions.PermissionDenied("This API token may not be used from your address.")
    from .services import token_touch

    token_touch(token=token)
    ctx.actor = token.user
    return token.user, token
