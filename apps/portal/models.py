"""The customer portal's own realm: portal users (never staff ``User`` rows), their sessions and
tokens, and each tenant's portal settings.

A portal user belongs to one customer of one tenant, with one role there. Its sessions (browser) and
tokens (portal API) are rows of ``PortalSession``: only a hash of the secret is stored, and revoking
the row ends it at the next request. Nothing here is ever accepted by the staff API's authentication,
and staff credentials are never accepted here (``apps/portal/auth.py``).
"""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.hashers import check_password, make_password
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from apps.tenancy.models import Tenant, TenantOwnedModel, TimestampedModel

# A portal API token starts with this prefix: the staff API's resolvers do not know it, so it is refused
# there as an unknown session key, and the portal refuses any key without it.
TOKEN_PREFIX = "mpc_"


def sha256(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class PortalRole(models.TextChoices):
    OWNER = "owner", "Owner (everything, manages the customer's users)"
    BILLING = "billing", "Billing (invoices, payments, orders)"
    TECHNICAL = "technical", "Technical (services, no money)"


# What each role may see and do, in one place; pages and the portal API read it.
MONEY_ROLES = frozenset({PortalRole.OWNER, PortalRole.BILLING})
SERVICE_ROLES = frozenset({PortalRole.OWNER, PortalRole.TECHNICAL})
USER_ADMIN_ROLES = frozenset({PortalRole.OWNER})


class PortalSettings(TimestampedModel):
    """A tenant's portal policy. No row means the defaults (no self sign-up, 2FA optional)."""

    audit_fields = ("allow_signup", "require_2fa")

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="portal_settings")
    allow_signup = models.BooleanField(
        default=False, help_text="Visitors may create a customer account from the public catalog."
    )
    require_2fa = models.BooleanField(default=False, help_text="Every portal user must use a TOTP code to log in.")

    class Meta:
        verbose_name_plural = "portal settings"

    def __str__(self) -> str:
        return f"Portal settings of {self.tenant}"

    @classmethod
    def of(cls, tenant) -> PortalSettings:
        return cls.objects.filter(tenant=tenant).first() or cls(tenant=tenant)


class PortalUser(TenantOwnedModel):
    """A person who logs in to a tenant's portal for one of its customers."""

    audit_fields = ("customer", "email", "name", "role", "is_active", "email_verified_at", "totp_confirmed_at")
    # The audit trail records a portal user as the actor by email, with ``via = "portal"``
    # (apps/audit/services.py: an actor with an ``audit_realm`` is not a staff ``User``).
    audit_realm = "portal"

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="portal_users")
    email = models.EmailField()
    name = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=10, choices=PortalRole.choices, default=PortalRole.OWNER)
    password = models.CharField(max_length=128, blank=True, help_text="Django's password hash; blank: not set yet.")
    is_active = models.BooleanField(default=True)
    email_verified_at = models.DateTimeField(null=True, blank=True)
    invited_at = models.DateTimeField(null=True, blank=True)
    last_login_at = models.DateTimeField(null=True, blank=True)
    password_changed_at = models.DateTimeField(null=True, blank=True)
    # TOTP (RFC 6238) with django-otp's own primitive (django_otp.oath.TOTP): the hex key, when it was
    # confirmed, and the last time step used (a code is never accepted twice).
    totp_secret = models.CharField(max_length=80, blank=True)
    totp_confirmed_at = models.DateTimeField(null=True, blank=True)
    totp_last_step = models.BigIntegerField(default=-1)

    class Meta:
        ordering = ["email"]
        constraints = [
            # One portal login per address in a tenant: the login form asks for no customer.
            models.UniqueConstraint("tenant", Lower("email"), name="uniq_portal_user_email_per_tenant"),
        ]
        indexes = [models.Index(fields=["tenant", "customer"])]

    def __str__(self) -> str:
        return f"{self.email} ({self.role})"

    # The portal user as the request's actor (audit, security events): never a staff user.
    is_authenticated = True
    is_anonymous = False
    is_staff = False

    @property
    def audit_label(self) -> str:
        return self.email

    @property
    def idempotency_principal(self) -> str:
        return f"portal:{self.pk}"

    def set_password(self, raw: str) -> None:
        self.password = make_password(raw)
        self.password_changed_at = timezone.now()

    def check_password(self, raw: str) -> bool:
        return bool(self.password) and check_password(raw, self.password)

    @property
    def has_password(self) -> bool:
        return bool(self.password)

    @property
    def has_2fa(self) -> bool:
        return self.totp_confirmed_at is not None

    @property
    def sees_money(self) -> bool:
        return self.role in MONEY_ROLES

    @property
    def runs_services(self) -> bool:
        return self.role in SERVICE_ROLES

    @property
    def manages_users(self) -> bool:
        return self.role in USER_ADMIN_ROLES


class PortalSession(TenantOwnedModel):
    """A browser session (``web``) or a portal API token (``api``) of one portal user."""

    audit_fields = ("user", "kind", "prefix", "revoked_at")

    class Kind(models.TextChoices):
        WEB = "web", "Browser session"
        API = "api", "Portal API token"

    user = models.ForeignKey(PortalUser, on_delete=models.CASCADE, related_name="sessions")
    kind = models.CharField(max_length=4, choices=Kind.choices)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    method = models.CharField(max_length=16, default="password", help_text="password, or password+totp")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.prefix}… of {self.user.email}"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    @staticmethod
    def new_secret(kind: str) -> str:
        raw = secrets.token_urlsafe(32)
        return f"{TOKEN_PREFIX}{raw}" if kind == PortalSession.Kind.API else raw
