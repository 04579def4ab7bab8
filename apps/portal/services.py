"""Every write of the portal realm: portal users, their login, sessions, tokens, passwords and 2FA.

Each public function is one transaction that records its audit event. Actions a portal user takes
on the tenant's domain rows (orders, payments, a pod's restart) call those apps' own services; the
request's actor is then the portal user, recorded by ``audit`` with ``via = "portal"``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_otp.oath import TOTP

from apps.audit import services as audit
from apps.billing.services import tenant_settings
from apps.common import context
from apps.common.exceptions import Conflict, DomainError, InvalidInput
from apps.customers import services as customer_services
from apps.customers.models import Customer
from apps.tenancy.scoping import tenant_scope
from apps.whitelabel.emails import branded_message, render_text
from apps.whitelabel.selectors import brand_for, portal_url

from . import lockout, signed
from .models import PortalRole, PortalSession, PortalSettings, PortalUser, sha256

WEB_SESSION_TTL = timedelta(hours=12)
API_TOKEN_TTL = timedelta(days=30)
MIN_PASSWORD_LENGTH = 10
TOTP_STEP = 30
TOTP_TOLERANCE = 1  # one step either side, as django-otp's TOTPDevice allows by default


class LoginRefused(DomainError):
    status_code = 400
    code = "invalid_credentials"


class LockedOut(DomainError):
    status_code = 429
    code = "locked_out"


class SecondFactorRequired(DomainError):
    """The password was right; a TOTP code is needed (or must be set up first, ``enrol=True``)."""

    status_code = 400
    code = "mfa_required"

    def __init__(self, message: str, *, enrol: bool = False) -> None:
        super().__init__(message)
        self.enrol = enrol


def absolute(path: str) -> str:
    """A path on the panel's own address. Links into a tenant's portal use ``portal_url`` (its custom
    domain when it has one)."""
    return settings.MPANEL_FRONTEND_URL.rstrip("/") + path


def _send(*, tenant, to: str, subject: str, template: str, values: dict) -> None:
    """In the tenant's brand (its name as sender, its support address as Reply-To, links on its custom
    domain), after the commit (a rollback sends nothing); a mail server that is down fails loudly."""
    brand = brand_for(tenant)
    body = render_text(f"portal/email/{template}.txt", {**values, "brand": brand})
    message = branded_message(tenant, subject=subject.format(brand=brand.display_name), text=body, to=[to])
    transaction.on_commit(message.send)


def check_password_rules(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"Use at least {MIN_PASSWORD_LENGTH} characters.", field="password")
    try:
        validate_password(password)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), field="password") from exc


# --- settings -----------------------------------------------------------------------------------


@transaction.atomic
def settings_update(*, tenant, allow_signup: bool | None = None, require_2fa: bool | None = None) -> PortalSettings:
    conf, _ = PortalSettings.objects.select_for_update().get_or_create(tenant=tenant)
    with audit.change(conf, "portal.settings_update", tenant=tenant):
        if allow_signup is not None:
            conf.allow_signup = allow_signup
        if require_2fa is not None:
            conf.require_2fa = require_2fa
        conf.save()
    return conf


# --- users (staff invite them; an owner manages the customer's others) --------------------------


def _email(value: str) -> str:
    return (value or "").strip().lower()


def _insert(user: PortalUser) -> None:
    if PortalUser.all_tenants.filter(tenant_id=user.tenant_id, email__iexact=user.email).exists():
        raise InvalidInput("This address has a portal login in this business already.", field="email")
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:  # a concurrent invitation of the same address won
        raise InvalidInput("This address has a portal login in this business already.", field="email") from exc


def invitation_url(user: PortalUser) -> str:
    token = signed.user_link_token(user, "invitation")
    return portal_url(user.tenant, "invitation", token=token)


@transaction.atomic
def portal_user_invite(*, customer: Customer, email: str, role: str, name: str = "", actor=None) -> PortalUser:
    """A new portal user of ``customer``, with no password yet: the emailed link sets it (7 days)."""
    if role not in PortalRole.values:
        raise InvalidInput("Unknown role.", field="role")
    user = PortalUser(
        tenant_id=customer.tenant_id,
        customer=customer,
        email=_email(email),
        name=name[:200],
        role=role,
        invited_at=timezone.now(),
    )
    user.full_clean(exclude=["tenant", "customer", "password"])
    _insert(user)
    audit.created(user, "portal_user.invite", actor=actor)
    portal_user_send_invitation(user)
    return user


def portal_user_send_invitation(user: PortalUser) -> None:
    tenant = user.customer.tenant
    _send(
        tenant=tenant,
        to=user.email,
        subject="Your {brand} customer account",
        template="invitation",
        values={"user": user, "tenant": tenant, "url": invitation_url(user), "days": signed.INVITATION_MAX_AGE.days},
    )


@transaction.atomic
def portal_user_resend(*, user: PortalUser, actor=None) -> PortalUser:
    user = PortalUser.objects.select_for_update().get(pk=user.pk)
    if user.has_password:
        raise Conflict("This user has set a password already; they can reset it from the login page.")
    with audit.change(user, "portal_user.reinvite", actor=actor):
        user.invited_at = timezone.now()
        user.save()
    portal_user_send_invitation(user)
    return user


def _owners_left(customer_id, excluding) -> int:
    return (
        PortalUser.objects.filter(customer_id=customer_id, role=PortalRole.OWNER, is_active=True)
        .exclude(pk=excluding.pk)
        .count()
    )


@transaction.atomic
def portal_user_update(*, user: PortalUser, data: dict, actor=None) -> PortalUser:
    user = PortalUser.objects.select_for_update().get(pk=user.pk)
    demotes = data.get("role", user.role) != PortalRole.OWNER or data.get("is_active", True) is False
    if user.role == PortalRole.OWNER and user.is_active and demotes and not _owners_left(user.customer_id, user):
        raise Conflict("A customer keeps at least one active owner.")
    with audit.change(user, "portal_user.update", actor=actor):
        for field in ("role", "name", "is_active"):
            if field in data:
                setattr(user, field, data[field])
        if user.role not in PortalRole.values:
            raise InvalidInput("Unknown role.", field="role")
        user.save()
    if not user.is_active:
        _revoke_all(user)
    return user


@transaction.atomic
def portal_user_remove(*, user: PortalUser, actor=None) -> None:
    user = PortalUser.objects.select_for_update().get(pk=user.pk)
    if user.role == PortalRole.OWNER and user.is_active and not _owners_left(user.customer_id, user):
        raise Conflict("A customer keeps at least one active owner.")
    audit.deleted(user, "portal_user.delete", actor=actor)
    user.delete()


# --- invitation, password reset, sign-up and email verification ---------------------------------


def user_for_link(tenant, token: str, purpose: str) -> PortalUser | None:
    max_age = {"invitation": signed.INVITATION_MAX_AGE, "reset": signed.RESET_MAX_AGE, "verify": signed.VERIFY_MAX_AGE}[
        purpose
    ]
    with tenant_scope(tenant):
        return signed.user_from_token(token, purpose, max_age, PortalUser.objects.filter(is_active=True))


@transaction.atomic
def invitation_accept(*, tenant, token: str, password: str, name: str = "") -> PortalUser:
    """Sets the invited user's first password; the link proves the address. Works once."""
    user = user_for_link(tenant, token, "invitation")
    if user is None or user.has_password:
        raise InvalidInput("This invitation link is invalid, used or expired; ask for a new one.", field="token")
    check_password_rules(password)
    with tenant_scope(tenant), audit.change(user, "portal_user.accept", actor=user) as change:
        user.set_password(password)
        user.email_verified_at = user.email_verified_at or timezone.now()
        if name:
            user.name = name[:200]
        user.save()
        change.mark(password="set")
    return user


@transaction.atomic
def password_reset_request(*, tenant, email: str) -> None:
    """Emails a reset link when the address has an active login; answers the same either way."""
    with tenant_scope(tenant):
        user = PortalUser.objects.filter(email__iexact=_email(email), is_active=True).first()
        if user is None:
            return
        audit.record(action="portal_user.password_reset_request", obj=user, actor=user)
        token = signed.user_link_token(user, "reset")
        url = portal_url(tenant, "reset-confirm", token=token)
        _send(
            tenant=tenant,
            to=user.email,
            subject="Reset your {brand} password",
            template="password_reset",
            values={"user": user, "tenant": tenant, "url": url},
        )


@transaction.atomic
def password_reset_confirm(*, tenant, token: str, password: str) -> PortalUser:
    user = user_for_link(tenant, token, "reset")
    if user is None:
        raise InvalidInput("This reset link is invalid, used or expired; ask for a new one.", field="token")
    check_password_rules(password)
    with tenant_scope(tenant), audit.change(user, "portal_user.password_reset", actor=user) as change:
        user.set_password(password)
        user.save()
        change.mark(password="changed")
    _revoke_all(user)  # a reset ends every session: it may follow a stolen password
    return user


@transaction.atomic
def password_change(*, user: PortalUser, current: str, new: str, keep: PortalSession | None = None) -> None:
    if not user.check_password(current):
        raise InvalidInput("The current password is wrong.", field="current_password")
    check_password_rules(new)
    user = PortalUser.objects.select_for_update().get(pk=user.pk)
    with audit.change(user, "portal_user.password_change", actor=user) as change:
        user.set_password(new)
        user.save()
        change.mark(password="changed")
    _revoke_all(user, keep=keep)


@dataclass
class SignUp:
    name: str
    email: str
    password: str
    company: str = ""
    country: str = ""


@transaction.atomic
def signup(*, tenant, data: SignUp) -> PortalUser:
    """A visitor's own customer account (when the tenant allows it): a customer and its owner, who
    logs in once the emailed link has verified the address."""
    if not PortalSettings.of(tenant).allow_signup:
        raise Conflict("This business does not take sign-ups online; contact them.", code="signup_closed")
    check_password_rules(data.password)
    email = _email(data.email)
    with tenant_scope(tenant):
        if PortalUser.objects.filter(email__iexact=email).exists():
            raise InvalidInput("This address has an account already: log in or reset the password.", field="email")
        customer = customer_services.customer_create(
            tenant=tenant,
            data={
                "name": data.name,
                "email": email,
                "company": data.company,
                "kind": "company" if data.company else "person",
                "country": data.country,
                # Billed in what the tenant bills in (its billing settings), never a fixed code.
                "currency": tenant_settings.default_currency(tenant),
            },
        )
        user = PortalUser(tenant=tenant, customer=customer, email=email, name=data.name[:200], role=PortalRole.OWNER)
        user.set_password(data.password)
        _insert(user)
        audit.created(user, "portal_user.signup", actor=user)
        send_verification(user)
    return user


def send_verification(user: PortalUser) -> None:
    tenant = user.customer.tenant
    token = signed.user_link_token(user, "verify")
    url = portal_url(tenant, "verify", token=token)
    _send(
        tenant=tenant,
        to=user.email,
        subject="Confirm your address for {brand}",
        template="verify",
        values={"user": user, "tenant": tenant, "url": url},
    )


@transaction.atomic
def email_verify(*, tenant, token: str) -> PortalUser:
    user = user_for_link(tenant, token, "verify")
    if user is None:
        raise InvalidInput("This confirmation link is invalid, used or expired.", field="token")
    with tenant_scope(tenant), audit.change(user, "portal_user.verify_email", actor=user):
        user.email_verified_at = timezone.now()
        user.save()
    return user


# --- login, sessions and tokens -----------------------------------------------------------------


def _totp(user: PortalUser) -> TOTP:
    return TOTP(bytes.fromhex(user.totp_secret), step=TOTP_STEP, digits=6)


def _verify_totp(user: PortalUser, code: str) -> bool:
    """django-otp's TOTP primitive; a time step is accepted once (a replayed code is refused)."""
    code = (code or "").strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6 and user.totp_secret):
        return False
    totp = _totp(user)
    for drift in range(-TOTP_TOLERANCE, TOTP_TOLERANCE + 1):
        totp.drift = drift
        if totp.token() == int(code) and totp.t() > user.totp_last_step:
            updated = PortalUser.all_tenants.filter(pk=user.pk, totp_last_step__lt=totp.t()).update(
                totp_last_step=totp.t()
            )
            return bool(updated)
    return False


def _issue(user: PortalUser, kind: str, method: str) -> tuple[PortalSession, str]:
    ctx = context.current()
    raw = PortalSession.new_secret(kind)
    ttl = WEB_SESSION_TTL if kind == PortalSession.Kind.WEB else API_TOKEN_TTL
    session = PortalSession.objects.create(
        tenant_id=user.tenant_id,
        user=user,
        kind=kind,
        key_hash=sha256(raw),
        prefix=raw[:8],
        expires_at=timezone.now() + ttl,
        ip=ctx.ip,
        user_agent=ctx.user_agent[:255],
        method=method,
    )
    return session, raw


def login(*, tenant, email: str, password: str, code: str = "", kind: str = PortalSession.Kind.WEB):
    """(session, raw secret) for a good password (and TOTP code when the user or the tenant needs one).

    Wrong answers count towards the lockout (the staff rule); the answer never says which part was
    wrong, nor whether the address has an account."""
    ctx = context.current()
    email = _email(email)
    if lockout.is_locked(tenant, email, ctx.ip):
        raise LockedOut("Too many failed login attempts. Try again later.")
    with tenant_scope(tenant):
        user = PortalUser.objects.select_related("customer").filter(email__iexact=email).first()
        good = user is not None and user.is_active and user.check_password(password)
        if not good:
            lockout.failed(tenant, email, ctx.ip)
            raise LoginRefused("Wrong email or password.")
        if user.email_verified_at is None:
            raise LoginRefused("Confirm your address first: follow the link we emailed you.")
        if user.customer.status == Customer.Status.CLOSED:
            raise LoginRefused("This customer account is closed.")
        method = "password"
        if user.has_2fa:
            if not code:
                raise SecondFactorRequired("Enter the code from your authenticator app.")
            if not _verify_totp(user, code):
                lockout.failed(tenant, email, ctx.ip)
                raise LoginRefused("Wrong or already used two-factor code.")
            method = "password+totp"
        with transaction.atomic():
            session, raw = _issue(user, kind, method)
            PortalUser.objects.filter(pk=user.pk).update(last_login_at=timezone.now())
            audit.record(action=f"portal.login.{kind}", obj=session, actor=user, changes={"method": method})
        lockout.succeeded(tenant, email)
        # A tenant that requires 2FA lets a user without it in only to set it up (the pages enforce it).
        return session, raw


def session_for_key(raw: str) -> PortalSession | None:
    """The live session or token whose secret is ``raw`` (any tenant: the caller scopes by its tenant)."""
    if not raw:
        return None
    session = (
        PortalSession.all_tenants.select_related("user", "user__customer", "tenant")
        .filter(key_hash=sha256(raw))
        .first()
    )
    if session is None or not session.is_live or not session.user.is_active:
        return None
    now = timezone.now()
    if session.last_used_at is None or now - session.last_used_at > timedelta(minutes=1):
        PortalSession.all_tenants.filter(pk=session.pk).update(last_used_at=now)
    return session


@transaction.atomic
def session_revoke(*, session: PortalSession, actor=None) -> None:
    if session.revoked_at is not None:
        return
    with audit.change(session, "portal.session_revoke", actor=actor):
        session.revoked_at = timezone.now()
        session.save(update_fields=["revoked_at", "updated_at"])


def _revoke_all(user: PortalUser, keep: PortalSession | None = None) -> int:
    live = PortalSession.all_tenants.filter(user=user, revoked_at__isnull=True)
    if keep is not None:
        live = live.exclude(pk=keep.pk)
    return live.update(revoked_at=timezone.now())


# --- two-factor (TOTP) --------------------------------------------------------------------------


@transaction.atomic
def totp_begin(*, user: PortalUser) -> str:
    """A new secret to add to an authenticator app (2FA is on only once ``totp_confirm`` checks a code)."""
    user = PortalUser.objects.select_for_update().get(pk=user.pk)
    if user.has_2fa:
        raise Conflict("Two-factor authentication is on already; turn it off first.")
    user.totp_secret = secrets.token_hex(20)
    user.totp_last_step = -1
    user.save(update_fields=["totp_secret", "totp_last_step", "updated_at"])
    return user.totp_secret


@transaction.atomic
def totp_confirm(*, user: PortalUser, code: str) -> None:
    user = PortalUser.objects.select_for_update().get(pk=user.pk)
    if user.has_2fa or not user.totp_secret:
        raise Conflict("Start the set-up first.")
    if not _verify_totp(user, code):
        raise InvalidInput("Wrong code: check the time on your phone and try again.", field="code")
    with audit.change(user, "portal_user.totp_enable", actor=user):
        user.totp_confirmed_at = timezone.now()
        user.save()


@transaction.atomic
def totp_disable(*, user: PortalUser, password: str) -> None:
    if PortalSettings.of(user.customer.tenant).require_2fa:
        raise Conflict("This business requires two-factor authentication.")
    if not user.check_password(password):
        raise InvalidInput("The password is wrong.", field="password")
    user = PortalUser.objects.select_for_update().get(pk=user.pk)
    with audit.change(user, "portal_user.totp_disable", actor=user):
        user.totp_secret = ""
        user.totp_confirmed_at = None
        user.save()
