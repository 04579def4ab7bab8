"""Tenants, members and invitations. Every function is one transaction and writes audit events."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict, Forbidden, InvalidInput, NotFound

from .models import Invitation, Membership, Tenant
from .roles import Role

User = get_user_model()

TENANT_FIELDS = ["name", "default_currency", "country", "status"]


@transaction.atomic
def tenant_create(*, actor, name: str, default_currency: str = "USD", country: str = "") -> Tenant:
    tenant = Tenant.objects.create(name=name, default_currency=default_currency, country=country)
    membership = Membership.objects.create(tenant=tenant, user=actor, role=Role.OWNER)
    audit.record(action="tenant.create", obj=tenant, tenant=tenant, after=audit.snapshot(tenant, TENANT_FIELDS))
    audit.record(action="member.add", obj=membership, tenant=tenant, after={"user": actor.email, "role": "OWNER"})
    return tenant


@transaction.atomic
def tenant_update(*, tenant: Tenant, data: dict) -> Tenant:
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    before = audit.snapshot(tenant, TENANT_FIELDS)
    for field, value in data.items():
        setattr(tenant, field, value)
    tenant.save()
    audit.record(
        action="tenant.update", obj=tenant, tenant=tenant, before=before, after=audit.snapshot(tenant, TENANT_FIELDS)
    )
    return tenant


def _check_may_grant(actor_role: Role, target_role: Role) -> None:
    if not actor_role.includes(Role.ADMIN):
        raise Forbidden("Only owners and admins manage members.")
    if target_role == Role.OWNER and actor_role != Role.OWNER:
        raise Forbidden("Only an owner can grant or remove the owner role.")


def _owner_count(tenant: Tenant) -> int:
    # Locking the owners' rows serialises concurrent demotions, so two owners cannot both leave.
    return len(list(Membership.objects.select_for_update().filter(tenant=tenant, role=Role.OWNER)))


@transaction.atomic
def member_add(*, tenant: Tenant, actor, actor_role: Role, email: str, role: Role) -> Membership | Invitation:
    role = Role(role)
    _check_may_grant(actor_role, role)
    email = email.strip().lower()
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        return invitation_create(tenant=tenant, actor=actor, email=email, role=role)
    try:
        with transaction.atomic():
            membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    except IntegrityError as exc:
        raise Conflict("This user is already a member of the tenant.", code="already_member") from exc
    audit.record(action="member.add", obj=membership, tenant=tenant, after={"user": email, "role": role.value})
    return membership


@transaction.atomic
def member_change_role(*, membership: Membership, actor_role: Role, role: Role) -> Membership:
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    role = Role(role)
    current = Role(membership.role)
    if current == role:
        return membership
    _check_may_grant(actor_role, role)
    if current == Role.OWNER:
        _check_may_grant(actor_role, Role.OWNER)
        if _owner_count(membership.tenant) <= 1:
            raise Conflict("The last owner cannot be demoted; make someone else owner first.", code="last_owner")
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    audit.record(
        action="member.role_change",
        obj=membership,
        tenant=membership.tenant,
        changes={"role": [current.value, role.value]},
    )
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, actor, actor_role: Role) -> None:
    membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
    leaving_self = membership.user_id == actor.pk
    if not leaving_self:
        _check_may_grant(actor_role, Role(membership.role))
    if membership.role == Role.OWNER and _owner_count(membership.tenant) <= 1:
        raise Conflict("The last owner cannot leave the tenant.", code="last_owner")
    audit.record(
        action="member.remove",
        obj=membership,
        tenant=membership.tenant,
        before={"user": membership.user.email, "role": membership.role},
    )
    membership.delete()


def invitation_create(*, tenant: Tenant, actor, email: str, role: Role) -> Invitation:
    if Invitation.objects.filter(
        tenant=tenant,
        email__iexact=email,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).exists():
        raise Conflict("An open invitation for this email exists already.", code="already_invited")
    raw = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        tenant=tenant, email=email, role=role, token_hash=Invitation.hash(raw), invited_by=actor
    )
    audit.record(action="member.invite", obj=invitation, tenant=tenant, after={"email": email, "role": role.value})
    link = f"{settings.MPANEL_FRONTEND_URL}/invitations/accept?token={raw}"
    transaction.on_commit(
        lambda: send_mail(
            subject=f"You are invited to {tenant.name} on mPanel",
            message=(
                f"{actor.email} invited you to join {tenant.name} as {role.label}.\n\n"
                f"Create an account with this email address, then accept the invitation:\n{link}\n\n"
                f"Invitation token: {raw}\nIt expires on {invitation.expires_at:%Y-%m-%d}."
            ),
            from_email=None,
            recipient_list=[email],
            fail_silently=True,
        )
    )
    return invitation


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor_role: Role) -> None:
    _check_may_grant(actor_role, Role(invitation.role))
    if not invitation.is_open:
        raise Conflict("This invitation is no longer open.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at", "updated_at"])
    audit.record(action="member.invite_revoke", obj=invitation, tenant=invitation.tenant)


@transaction.atomic
def invitation_accept(*, user, raw_token: str) -> Membership:
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("tenant")
        .filter(token_hash=Invitation.hash(raw_token))
        .first()
    )
    if invitation is None or invitation.email.lower() != user.email.lower():
        raise NotFound("No such invitation for this account.")
    if not invitation.is_open:
        raise Conflict("This invitation has expired or was already used.")
    if Membership.objects.filter(tenant=invitation.tenant, user=user).exists():
        raise Conflict("You are already a member of this tenant.", code="already_member")
    membership = Membership.objects.create(tenant=invitation.tenant, user=user, role=invitation.role)
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at", "updated_at"])
    audit.record(
        action="member.join",
        obj=membership,
        tenant=invitation.tenant,
        actor=user,
        after={"user": user.email, "role": invitation.role},
    )
    return membership


def validate_currency(code: str) -> str:
    code = (code or "").upper()
    from apps.common.money import CURRENCIES

    if code not in CURRENCIES:
        raise InvalidInput("Unknown ISO 4217 currency code.", field="currency")
    return code
