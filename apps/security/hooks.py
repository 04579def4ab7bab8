"""Where the security center plugs into the foundation: the signals that become security events,
the tenant request check, and the Shield rules in a website's spec. Imported by
``SecurityConfig.ready``, with the modules that register on the foundation's extension points when
they load: ``authentication`` (the ``mp_`` token resolver), ``mfa`` (the login's second step) and
``guardian`` with ``checks`` (its job and checks)."""

from __future__ import annotations

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.accounts.models import AuthToken, User
from apps.accounts.signals import session_started
from apps.audit.models import AuditEvent
from apps.tenancy.models import Membership
from apps.tenancy.resolution import TENANT_ROWS, register_request_check
from apps.tenancy.signals import member_removed
from apps.websites.services import SPEC_PARTS

from . import authentication, checks, guardian, mfa, policy, shield  # noqa: F401 - they register when they load
from .events import record_event
from .models import EventType, SecurityPolicy
from .services import tokens_revoke_for_member

# A tenant's session limits are checked when a session acts in that tenant (policy.check_tenant_request),
# not at authentication: they do not govern the account's work elsewhere.
register_request_check(policy.check_tenant_request)
# Read with the credentials, in authentication's one query (policy._policy_for_request reads it back).
TENANT_ROWS.register("security_policy")(SecurityPolicy)


@SPEC_PARTS.register("shield")
def site_shield(site) -> dict | None:
    """A website's vhost carries its Shield rules (looked up when the spec is made: always shield's own)."""
    return shield.effective_rules(site)


@receiver(session_started, dispatch_uid="security.session_started")
def on_session_started(sender, user, token, method="password", **kwargs):
    record_event(EventType.LOGIN_SUCCESS, user=user, actor=user, reason=method, data={"session": str(token.pk)})


def _is_admin(request) -> bool:
    return bool(request is not None and getattr(request, "path", "").startswith("/admin/"))


@receiver(user_login_failed, dispatch_uid="security.login_failed")
def on_login_failed(sender, credentials, request=None, **kwargs):
    email = str(credentials.get("email") or credentials.get("username") or "")[:254]
    user = User.objects.filter(email__iexact=email).first() if email else None
    if request is not None and getattr(request, "axes_locked_out", False):
        reason = "locked_out"
    elif user is None:
        reason = "unknown_user"
    elif not user.is_active:
        reason = "inactive"
    else:
        reason = "bad_password"
    data = {"via": "admin" if _is_admin(request) else "api"}
    record_event(EventType.LOGIN_FAILURE, user=user, email=email, actor=None, reason=reason, data=data)


@receiver(user_locked_out, dispatch_uid="security.locked_out")
def on_locked_out(sender, request=None, username=None, ip_address=None, **kwargs):
    email = str(username or "")[:254]
    user = User.objects.filter(email__iexact=email).first() if email else None
    record_event(EventType.LOGIN_LOCKED_OUT, user=user, email=email, actor=None, data={"ip": ip_address})


@receiver(user_logged_in, dispatch_uid="security.logged_in")
def on_logged_in(sender, request=None, user=None, **kwargs):
    """Browser logins: the operators' admin (the API's logins are recorded by on_session_started)."""
    if _is_admin(request):
        device = getattr(user, "otp_device", None)
        record_event(
            EventType.ADMIN_LOGIN,
            user=user,
            actor=user,
            tenant=None,
            reason="otp" if device is not None else "",
        )


@receiver(post_save, sender=User, dispatch_uid="security.user_saved")
def on_user_saved(sender, instance, created, **kwargs):
    if not created and getattr(instance, "_password_changed", False):
        record_event(EventType.PASSWORD_CHANGED, user=instance)


@receiver(member_removed, dispatch_uid="security.member_removed")
def on_member_removed(sender, membership, actor=None, **kwargs):
    tokens_revoke_for_member(membership=membership, actor=actor)


MEMBER_ACTIONS = {
    "member.add": "member.added",
    "member.join": "member.added",
    "member.role_change": "member.role_changed",
    "member.remove": "member.removed",
}


@receiver(post_save, sender=AuditEvent, dispatch_uid="security.audit_event")
def on_audit_event(sender, instance, created, **kwargs):
    """Membership changes are audited by the tenancy services, and operators revoke sessions in the
    admin; the security log mirrors both."""
    if not created:
        return
    if instance.action == "auth.session_revoke" and instance.via == "admin":
        token = AuthToken.objects.select_related("user").filter(pk=instance.object_id).first()
        if token is not None:
            record_event("session.revoked", user=token.user, actor=instance.actor, reason="operator")
        return
    if instance.action not in MEMBER_ACTIONS or instance.tenant_id is None:
        return
    membership = Membership.objects.select_related("user").filter(pk=instance.object_id).first()
    user = membership.user if membership is not None else None
    record_event(
        MEMBER_ACTIONS[instance.action],
        user=user,
        tenant=instance.tenant_id,
        actor=instance.actor,
        data={"changes": instance.changes},
    )
