"""Where the security center plugs into the foundation: token resolver, session and request
checks, the login's second step, and the signals that become security events."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_save

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    from axes.signals import user_locked_out

    from apps.accounts import views as account_views
    from apps.accounts.authentication import register_token_resolver
    from apps.accounts.signals import session_started
    from apps.audit.models import AuditEvent
    from apps.tenancy.resolution import register_request_check
    from apps.tenancy.signals import member_removed

    from . import authentication, guardian, mfa, policy  # noqa: F401 - guardian registers its job and checks

    register_token_resolver("mp_", authentication.resolve_api_token)
    # A tenant's session limits are checked when a session acts in that tenant (policy.check_tenant_request),
    # not at authentication: they do not govern the account's work elsewhere.
    register_request_check(policy.check_tenant_request)
    if mfa.login_challenge not in account_views.LOGIN_CHALLENGES:
        account_views.LOGIN_CHALLENGES.append(mfa.login_challenge)

    session_started.connect(on_session_started, dispatch_uid="security.session_started")
    user_login_failed.connect(on_login_failed, dispatch_uid="security.login_failed")
    user_locked_out.connect(on_locked_out, dispatch_uid="security.locked_out")
    user_logged_in.connect(on_logged_in, dispatch_uid="security.logged_in")
    post_save.connect(on_user_saved, sender=get_user_model(), dispatch_uid="security.user_saved")
    post_save.connect(on_audit_event, sender=AuditEvent, dispatch_uid="security.audit_event")
    member_removed.connect(on_member_removed, dispatch_uid="security.member_removed")


def _record(*args, **kwargs):
    from .events import record_event

    return record_event(*args, **kwargs)


def on_session_started(sender, user, token, method="password", **kwargs):
    from .models import EventType

    _record(EventType.LOGIN_SUCCESS, user=user, actor=user, reason=method, data={"session": str(token.pk)})


def _is_admin(request) -> bool:
    return bool(request is not None and getattr(request, "path", "").startswith("/admin/"))


def on_login_failed(sender, credentials, request=None, **kwargs):
    from .models import EventType

    email = str(credentials.get("email") or credentials.get("username") or "")[:254]
    user = get_user_model().objects.filter(email__iexact=email).first() if email else None
    if request is not None and getattr(request, "axes_locked_out", False):
        reason = "locked_out"
    elif user is None:
        reason = "unknown_user"
    elif not user.is_active:
        reason = "inactive"
    else:
        reason = "bad_password"
    data = {"via": "admin" if _is_admin(request) else "api"}
    _record(EventType.LOGIN_FAILURE, user=user, email=email, actor=None, reason=reason, data=data)


def on_locked_out(sender, request=None, username=None, ip_address=None, **kwargs):
    from .models import EventType

    email = str(username or "")[:254]
    user = get_user_model().objects.filter(email__iexact=email).first() if email else None
    _record(EventType.LOGIN_LOCKED_OUT, user=user, email=email, actor=None, data={"ip": ip_address})


def on_logged_in(sender, request=None, user=None, **kwargs):
    """Browser logins: the operators' admin (the API's logins are recorded by on_session_started)."""
    from .models import EventType

    if _is_admin(request):
        device = getattr(user, "otp_device", None)
        _record(
            EventType.ADMIN_LOGIN,
            user=user,
            actor=user,
            tenant=None,
            reason="otp" if device is not None else "",
        )


def on_user_saved(sender, instance, created, **kwargs):
    from .models import EventType

    if not created and getattr(instance, "_password_changed", False):
        _record(EventType.PASSWORD_CHANGED, user=instance)


def on_member_removed(sender, membership, actor=None, **kwargs):
    from .services import tokens_revoke_for_member

    tokens_revoke_for_member(membership=membership, actor=actor)


MEMBER_ACTIONS = {
    "member.add": "member.added",
    "member.join": "member.added",
    "member.role_change": "member.role_changed",
    "member.remove": "member.removed",
}


def on_audit_event(sender, instance, created, **kwargs):
    """Membership changes are audited by the tenancy services, and operators revoke sessions in the
    admin; the security log mirrors both."""
    if not created:
        return
    if instance.action == "auth.session_revoke" and instance.via == "admin":
        from apps.accounts.models import AuthToken

        token = AuthToken.objects.select_related("user").filter(pk=instance.object_id).first()
        if token is not None:
            _record("session.revoked", user=token.user, actor=instance.actor, reason="operator")
        return
    if instance.action not in MEMBER_ACTIONS or instance.tenant_id is None:
        return
    from apps.tenancy.models import Membership

    membership = Membership.objects.select_related("user").filter(pk=instance.object_id).first()
    user = membership.user if membership is not None else None
    _record(
        MEMBER_ACTIONS[instance.action],
        user=user,
        tenant=instance.tenant_id,
        actor=instance.actor,
        data={"changes": instance.changes},
    )
