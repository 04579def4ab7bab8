"""Tenants, members and invitations. Every function is one transaction and writes audit events."""

from __future__ import annotations

import secrets

from allauth.account import app_settings as allauth_settings
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict, Forbidden, InvalidInput, NotFound
from apps.common.money import CURRENCIES

from .models import Invitation, Membership, Tenant
from .roles import Role
from .signals import member_removed


@transaction.atomic
def tenant_create(*, actor, name: str, default_currency: str = "USD", country: str = "") -> Tenant:
    tenant = Tenant.objects.create(name=name, default_currency=default_currency, country=country)
    membership = Membership.objects.create(tenant=tenant, user=actor, role=Role.OWNER)
    audit.created(tenant, "tenant.create", tenant=tenant)
    audit.record(action="member.add", obj=membership, tenant=tenant, after={"user": actor.email, "role": "OWNER"})
    return tenant


@transaction.atomic
def tenant_update(*, tenant: Tenant, data: dict) -> Tenant:
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    with audit.change(tenant, "tenant.update", tenant=tenant):
        for field, value in data.items():
            setattr(tenant, field, value)
        tenant.save()
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
def member_add(*, tenant: Tenant, actor, actor_role: Role, email: str, role: Role) -> Invitation:
    """Invites ``email`` to the tenant: nobody is attached without accepting.

    Whether an account has this email is never looked up here, so the work done, the answer and the
    email sent are the same either way: the route cannot tell who has an account on the platform.
    Only membership of this very tenant is checked (its admins see their members anyway).
    """
    role = Role(role)
    _check_may_grant(actor_role, role)
    email = email.strip().lower()
    # One invitation per address at a time, also under concurrent requests: they queue on the tenant row.
    Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise Conflict("This user is already a member of the tenant.", code="already_member")
    return invitation_create(tenant=tenant, actor=actor, email=email, role=role)


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
    # What the member held in this tenant ends with the membership (their API tokens are revoked), so
    # that being invited back later revives nothing.
    member_removed.send(sender=Membership, membership=membership, actor=actor)
    membership.delete()


def _open(queryset):
    return queryset.filter(
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        declined_at__isnull=True,
        expires_at__gt=timezone.now(),
    )


def invitation_create(*, tenant: Tenant, actor, email: str, role: Role) -> Invitation:
    if _open(Invitation.objects.filter(tenant=tenant, email__iexact=email)).exists():
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
            # One text for every address: whether it has an account must not show in the email either.
            message=(
                f"{actor.email} invited you to join {tenant.name} as {role.label}.\n\n"
                f"If you have an mPanel account with this email address, sign in: the invitation waits\n"
                f"for your answer among your invitations, or follow this link to accept it.\n"
                f"If you have none, create one with this email address first, then follow the link:\n"
                f"{link}\n\n"
                f"Invitation token: {raw}\nIt expires on {invitation.expires_at:%Y-%m-%d}.\n"
                f"If you do not want to join, decline it or ignore this email: nothing happens without you."
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


def invitations_for(user):
    """Invitations addressed to ``user`` (any state): to the account's email address, and, where the
    deployment requires email verification, only once that address is verified. The one rule every
    way of seeing, accepting or declining an invitation goes through."""
    queryset = Invitation.objects.filter(email__iexact=user.email)
    if allauth_settings.EMAIL_VERIFICATION == allauth_settings.EmailVerificationMethod.MANDATORY:
        from allauth.account.models import EmailAddress

        if not EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True).exists():
            return queryset.none()
    return queryset


def invitations_pending_for(user):
    """What waits for ``user``'s answer: open invitations addressed to them."""
    return _open(invitations_for(user))


def _addressed(user, **lookup) -> Invitation:
    invitation = invitations_for(user).select_for_update(of=("self",)).select_related("tenant").filter(**lookup).first()
    if invitation is None:
        # Someone else's invitation, or none: the same answer (its existence does not leak).
        raise NotFound("No such invitation for this account.")
    return invitation


def _ensure_open(invitation: Invitation) -> None:
    if not invitation.is_open:
        raise Conflict(f"This invitation is no longer open ({invitation.status}).", code="invitation_closed")


@transaction.atomic
def invitation_accept(*, user, raw_token: str | None = None, invitation_id=None) -> Membership:
    """Joins the tenant of an open invitation addressed to ``user``, named by its emailed token or its id."""
    lookup = {"token_hash": Invitation.hash(raw_token)} if raw_token is not None else {"pk": invitation_id}
    invitation = _addressed(user, **lookup)
    _ensure_open(invitation)
    try:
        with transaction.atomic():
            membership = Membership.objects.create(tenant=invitation.tenant, user=user, role=invitation.role)
    except IntegrityError as exc:
        raise Conflict("You are already a member of this tenant.", code="already_member") from exc
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at", "updated_at"])
    audit.record(
        action="member.join",
        obj=membership,
        tenant=invitation.tenant,
        actor=user,
        after={"user": user.email, "role": invitation.role, "invitation": str(invitation.pk)},
    )
    return membership


@transaction.atomic
def invitation_decline(*, user, invitation_id) -> Invitation:
    invitation = _addressed(user, pk=invitation_id)
    _ensure_open(invitation)
    invitation.declined_at = timezone.now()
    invitation.save(update_fields=["declined_at", "updated_at"])
    audit.record(
        action="member.invite_decline",
        obj=invitation,
        tenant=invitation.tenant,
        actor=user,
        changes={"declined_at": [None, invitation.declined_at]},
    )
    return invitation


def validate_currency(code: str) -> str:
    code = (code or "").upper()
    if code not in CURRENCIES:
        raise InvalidInput("Unknown ISO 4217 currency code.", field="currency")
    return code
