"""Personal API tokens ``mp_…`` as bearer credentials (a resolver on ``accounts.extensions.TOKEN_RESOLVERS``)."""

from __future__ import annotations

from rest_framework import exceptions

from apps.accounts.extensions import TOKEN_RESOLVERS
from apps.common import context
from apps.tenancy.viewsets import TenantScopedViewSet

from .models import ApiToken, sha256
from .policy import ip_allowed
from .services import TOKEN_PREFIX, token_touch


def _view_class(request):
    match = getattr(getattr(request, "_request", request), "resolver_match", None)
    func = getattr(match, "func", None)
    return getattr(func, "cls", None) or getattr(func, "view_class", None)


# Who can get in is never an API token's business: a leaked token must not be able to plant an
# owner, invite an address, mint or revoke tokens, loosen the policy, or touch an account's own
# security. A tenant API over one of these models is identity management whatever it declares, so a
# new route over them is closed to tokens by default. (Lower-case model labels.)
IDENTITY_MODELS = frozenset(
    {
        "accounts.user",
        "accounts.authtoken",
        "auth.group",
        "auth.permission",
        "guardian.userobjectpermission",
        "guardian.groupobjectpermission",
        "otp_totp.totpdevice",
        "security.apitoken",
        "security.mfachallenge",
        "security.recoverycode",
        "security.securitypolicy",
        "tenancy.invitation",
        "tenancy.membership",
        "tenancy.tenant",
    }
)


def token_may_reach(view_cls) -> bool:
    """THE rule of what a personal API token reaches, fail-closed: a tenant API
    (``TenantScopedViewSet``; never an account, login, password, 2FA or session view, nor
    ``/tenants/``) that manages none of ``IDENTITY_MODELS`` and does not declare
    ``identity_management = True``. A view with no model to judge by is refused."""
    if not (isinstance(view_cls, type) and issubclass(view_cls, TenantScopedViewSet)):
        return False
    if getattr(view_cls, "identity_management", False):
        return False
    model = getattr(getattr(view_cls, "queryset", None), "model", None)
    return model is not None and model._meta.label_lower not in IDENTITY_MODELS


@TOKEN_RESOLVERS.register(TOKEN_PREFIX)
def resolve_api_token(raw: str, request):
    """An API token reaches only what ``token_may_reach`` allows, in its one tenant, with at most
    its role (``apps.tenancy.resolution``)."""
    token = ApiToken.all_tenants.select_related("user").filter(key_hash=sha256(raw)).first()
    if token is None or not token.is_live or not token.user.is_active:
        raise exceptions.AuthenticationFailed("Invalid, expired or revoked API token.")
    if not token_may_reach(_view_class(request)):
        raise exceptions.PermissionDenied(
            "API tokens reach tenant APIs only, never members, invitations, tokens, the security policy or "
            "an account's own security; sign in to do this."
        )
    ctx = context.current()
    if not ip_allowed(ctx.ip, token.allowed_ips):
        raise exceptions.PermissionDenied("This API token may not be used from your address.")
    token_touch(token=token)
    ctx.actor = token.user
    return token.user, token
