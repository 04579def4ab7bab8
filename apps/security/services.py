"""Writes of the security center: API tokens, the tenant policy, sessions and passwords (each one
transaction with an audit event and a security event), and the Shield's policies."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from apps.accounts.models import AuthToken
from apps.audit import services as audit
from apps.common import context
from apps.common.exceptions import Conflict, InvalidInput, NotFound
from apps.tenancy.roles import Role
from apps.websites import services as website_services
from apps.websites.models import Website, WebsiteStatus

from . import policy as policies
from .events import record_event
from .mfa import has_2fa
from .models import ApiToken, EventType, SecurityPolicy, SessionTenantUse, ShieldEvent, ShieldPolicy, sha256
from .shield import clean_policy_data

TOKEN_PREFIX = "mp_"


# --- personal API tokens -------------------------------------------------------------------------


@transaction.atomic
def token_create(
    *,
    tenant,
    actor,
    actor_role: Role,
    name: str,
    role: Role | None = None,
    expires_at: datetime | None = None,
    allowed_ips: list[str] | None = None,
) -> tuple[ApiToken, str]:
    """A new ``mp_…`` token of ``actor`` in ``tenant``; the secret is returned once, only its hash kept."""
    role = Role(role) if role else Role(actor_role)
    if not Role(actor_role).includes(role):
        raise InvalidInput("A token's role cannot be above your own role in this tenant.", field="role")
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("Must be in the future.", field="expires_at")
    policy = policies.policy_of(tenant)
    if policy is not None and policy.token_max_lifetime_days:
        cap = now + timedelta(days=policy.token_max_lifetime_days)
        if expires_at is None:
            raise InvalidInput(
                f"This tenant's policy requires an expiry within {policy.token_max_lifetime_days} days.",
                field="expires_at",
            )
        if expires_at > cap:
            raise InvalidInput(
                f"This tenant's policy caps tokens at {policy.token_max_lifetime_days} days.", field="expires_at"
            )
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        tenant=tenant,
        user=actor,
        name=name,
        prefix=raw[:11],
        key_hash=sha256(raw),
        max_role=role.value,
        expires_at=expires_at,
        allowed_ips=policies.parse_cidrs(allowed_ips or [], "allowed_ips"),
    )
    audit.created(token, "security.token_create")
    record_event(
        EventType.TOKEN_CREATED,
        user=actor,
        tenant=tenant,
        data={"token": str(token.pk), "name": name, "role": role.value, "expires_at": expires_at},
    )
    return token, raw


@transaction.atomic
def token_revoke(*, token: ApiToken, actor) -> ApiToken:
    token = ApiToken.all_tenants.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        raise Conflict("This token is revoked already.", code="already_revoked")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at", "updated_at"])
    audit.record(action="security.token_revoke", obj=token, changes={"revoked_at": [None, token.revoked_at]})
    record_event(
        EventType.TOKEN_REVOKED,
        user=token.user,
        tenant=token.tenant_id,
        data={"token": str(token.pk), "name": token.name},
    )
    return token


def tokens_revoke_for_member(*, membership, actor) -> int:
    """A member leaving a tenant (removed, or leaving) ends their API tokens there: revoked, audited
    and recorded like any revocation, so that being invited back revives none of them. Bearer
    sessions belong to the account, not to a tenant, and are left alone."""
    tokens = list(
        ApiToken.all_tenants.select_for_update().filter(
            tenant_id=membership.tenant_id, user_id=membership.user_id, revoked_at__isnull=True
        )
    )
    now = timezone.now()
    ApiToken.all_tenants.filter(pk__in=[t.pk for t in tokens]).update(revoked_at=now, updated_at=now)
    for token in tokens:
        audit.record(
            action="security.token_revoke",
            obj=token,
            tenant=membership.tenant_id,
            actor=actor,
            changes={"revoked_at": [None, now]},
        )
        record_event(
            EventType.TOKEN_REVOKED,
            user=membership.user_id,
            email=membership.user.email,
            tenant=membership.tenant_id,
            actor=actor,
            reason="member_removed",
            data={"token": str(token.pk), "name": token.name},
        )
    return len(tokens)


def token_touch(*, token: ApiToken) -> None:
    """Last use time and address, written at most once a minute; a first use from an address is an event."""
    ctx = context.current()
    now = timezone.now()
    ip = ctx.ip
    new_ip = bool(ip) and ip not in (token.seen_ips or [])
    stale = token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1)
    if not (new_ip or stale or ip != token.last_used_ip):
        return
    with transaction.atomic():
        fields = {"last_used_at": now, "last_used_ip": ip}
        if new_ip:
            fields["seen_ips"] = [*(token.seen_ips or []), ip][-50:]
        ApiToken.all_tenants.filter(pk=token.pk).update(**fields)
        for key, value in fields.items():
            setattr(token, key, value)
        if new_ip:
            record_event(
                EventType.TOKEN_NEW_IP,
                user=token.user,
                tenant=token.tenant_id,
                actor=token.user,
                data={"token": str(token.pk), "name": token.name, "first": len(token.seen_ips) == 1},
            )


# --- tenant policy -------------------------------------------------------------------------------


def policy_for(tenant) -> SecurityPolicy:
    """The tenant's policy, or the defaults (unsaved) when it never set one."""
    return policies.policy_of(tenant) or SecurityPolicy(tenant=tenant)


@transaction.atomic
def policy_update(*, tenant, actor, data: dict) -> SecurityPolicy:
    existing = SecurityPolicy.objects.select_for_update().filter(tenant=tenant).first()
    policy = existing or SecurityPolicy(tenant=tenant)
    with audit.change(policy, "security.policy_update", tenant=tenant) as change:
        if existing is None:
            change.before = {}  # the first policy: every field is recorded as set, defaults included
        for field, value in data.items():
            setattr(policy, field, value)
        policy.ip_allowlist = policies.parse_cidrs(policy.ip_allowlist, "ip_allowlist")
        if policy.ip_allowlist and not policies.ip_allowed(context.current().ip, policy.ip_allowlist):
            raise InvalidInput(
                "Your own address is not in this allowlist: you would lock yourself out.", field="ip_allowlist"
            )
        if policy.require_2fa and not has_2fa(actor):
            raise InvalidInput("Turn on two-factor authentication for your own account first.", field="require_2fa")
        policy.save()
        if not policy.session_idle_timeout_minutes:
            # Idle clocks restart from this change if a timeout is set again (policy.check_session_in_tenant).
            SessionTenantUse.objects.filter(tenant=tenant).delete()
    record_event(EventType.POLICY_CHANGED, user=actor, tenant=tenant, data={"changes": change.event.changes})
    return policy


# --- my sessions and password --------------------------------------------------------------------


def my_sessions(user):
    return AuthToken.objects.live().filter(user=user)


@transaction.atomic
def session_revoke(*, user, session_id) -> AuthToken:
    token = AuthToken.objects.live().select_for_update().filter(user=user, pk=session_id).first()
    if token is None:
        raise NotFound("No such session.")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit.record(action="auth.session_revoke", obj=token, tenant=None, actor=user)
    record_event(EventType.SESSION_REVOKED, user=user, data={"session": str(token.pk), "prefix": token.prefix})
    return token


@transaction.atomic
def sessions_revoke_others(*, user, keep_id) -> int:
    tokens = list(AuthToken.objects.live().select_for_update().filter(user=user).exclude(pk=keep_id))
    now = timezone.now()
    AuthToken.objects.filter(pk__in=[t.pk for t in tokens]).update(revoked_at=now)
    for token in tokens:
        audit.record(action="auth.session_revoke", obj=token, tenant=None, actor=user)
    if tokens:
        record_event(EventType.SESSION_REVOKED, user=user, reason="others", data={"count": len(tokens)})
    return len(tokens)


@transaction.atomic
def password_change(*, user, old_password: str, new_password: str) -> None:
    """Checked by Django's validators and the strictest tenant policy; ends every other session."""
    if not user.check_password(old_password):
        raise InvalidInput("Your current password is not correct.", field="old_password")
    try:
        password_validation.validate_password(new_password, user)
    except DjangoValidationError as exc:
        raise ValidationError({"new_password": exc.messages}) from exc
    user.set_password(new_password)
    user.save()  # records password.changed (signal) and ends the other sessions (User.save)
    audit.record(action="user.password_change", obj=user, tenant=None, actor=user)


# --- Shield policies (apps/security/shield.py) ---------------------------------------------------


def _save_shield_policy(policy: ShieldPolicy) -> None:
    try:
        with transaction.atomic():
            policy.save()
    except IntegrityError as exc:
        raise Conflict("This site has a shield policy already.", code="duplicate_site") from exc


@transaction.atomic
def shield_policy_create(*, tenant, data: dict) -> ShieldPolicy:
    policy = ShieldPolicy(tenant=tenant, **clean_policy_data(data))
    _save_shield_policy(policy)
    audit.created(policy, "shield.policy_create")
    if policy.enabled:
        resync_websites(tenant_id=policy.tenant_id, sites={policy.site})
    return policy


@transaction.atomic
def shield_policy_update(*, policy: ShieldPolicy, data: dict) -> ShieldPolicy:
    policy = ShieldPolicy.objects.select_for_update().get(pk=policy.pk)
    site, enabled = policy.site, policy.enabled
    with audit.change(policy, "shield.policy_update") as change:
        for field, value in clean_policy_data(data).items():
            setattr(policy, field, value)
        _save_shield_policy(policy)
    if change.event.changes and (enabled or policy.enabled):
        resync_websites(tenant_id=policy.tenant_id, sites={site, policy.site})
    return policy


@transaction.atomic
def shield_policy_delete(*, policy: ShieldPolicy) -> None:
    audit.deleted(policy, "shield.policy_delete")
    site, enabled, tenant_id = policy.site, policy.enabled, policy.tenant_id
    policy.delete()
    if enabled:
        resync_websites(tenant_id=tenant_id, sites={site})


@transaction.atomic
def shield_events_ingest(*, tenant, events: list[dict]) -> int:
    rows = [ShieldEvent(tenant=tenant, **event) for event in events]
    ShieldEvent.objects.bulk_create(rows)
    audit.record(
        action="shield.events_ingest",
        tenant=tenant,
        object_type="security.shieldevent",
        changes={"count": [0, len(rows)]},
    )
    return len(rows)


def resync_websites(*, tenant_id, sites: set[str]) -> int:
    """Enqueue a ``website.update`` job for each live website of the tenant that one of ``sites``
    names ("" names them all): its node gets the new rules. Answers how many."""
    websites = Website.all_tenants.filter(tenant_id=tenant_id).exclude(
        status__in=[WebsiteStatus.DELETING, WebsiteStatus.DELETED]
    )
    if "" not in sites:
        websites = websites.filter(domain_rows__name__in=sites).distinct()
    count = 0
    for website in websites.select_related("tenant").order_by("pk"):
        website_services.website_resync(website=website)
        count += 1
    return count
