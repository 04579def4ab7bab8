"""Security center: events, tenant policy, personal API tokens, recovery codes, MFA challenges.

Secrets are never stored in clear: API tokens and recovery codes are stored as SHA-256 hashes
of high-entropy random values (there is nothing to brute force), MFA login tokens are signed
and point at a single-use challenge row.
"""

from __future__ import annotations

import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.jobs.errors import TenantErrorField
from apps.tenancy.models import TenantOwnedModel, TimestampedModel
from apps.tenancy.roles import Role


def sha256(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class EventType(models.TextChoices):
    LOGIN_SUCCESS = "login.success", "Login succeeded"
    LOGIN_FAILURE = "login.failure", "Login failed"
    LOGIN_LOCKED_OUT = "login.locked_out", "Locked out after repeated failures"
    ADMIN_LOGIN = "admin.login", "Operator logged into the admin"
    MFA_ENABLED = "mfa.enabled", "Two-factor authentication turned on"
    MFA_DISABLED = "mfa.disabled", "Two-factor authentication turned off"
    RECOVERY_CODE_USED = "mfa.recovery_code_used", "Recovery code used"
    RECOVERY_CODES_REGENERATED = "mfa.recovery_codes_regenerated", "Recovery codes regenerated"
    SESSION_REVOKED = "session.revoked", "Session revoked"
    PASSWORD_CHANGED = "password.changed", "Password changed"
    TOKEN_CREATED = "token.created", "API token created"
    TOKEN_NEW_IP = "token.used_new_ip", "API token used from a new address"
    TOKEN_REVOKED = "token.revoked", "API token revoked"
    POLICY_CHANGED = "policy.changed", "Security policy changed"
    MEMBER_ADDED = "member.added", "Member added"
    MEMBER_ROLE_CHANGED = "member.role_changed", "Member role changed"
    MEMBER_REMOVED = "member.removed", "Member removed"
    # Raised by other modules when something that protects the tenant's service failed (they record
    # these values; the labels are what the admin and the API show).
    SSL_EXPIRING = "ssl.certificate.expiring", "SSL certificate expiring and not renewed"
    SSL_ISSUANCE_FAILED = "ssl.certificate.failed", "SSL certificate issuance failed"
    BACKUP_DRILL_FAILED = "backup.drill_failed", "Backup restore drill failed"
    BACKUP_CHECK_FAILED = "backup.check_failed", "Backup repository check failed"


class SecurityEvent(models.Model):
    """An append-only security event.

    A user's account event (login, 2FA, password, sessions) is written once, with ``tenant`` empty:
    the user's own copy (``/security/me/events``), seen by no tenant. An event in a tenant (policy,
    token, membership) is written for that tenant (read by its ADMIN+ at ``/security/events``) and as
    the user's own copy.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    tenant = models.ForeignKey(
        "tenancy.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    email = models.CharField(max_length=254, blank=True, help_text="The account concerned, kept if it is deleted.")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    type = models.CharField(max_length=40, choices=EventType.choices)
    reason = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["user", "tenant", "-created_at"]),
            models.Index(fields=["type", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.email}"


class SecurityPolicy(TenantOwnedModel):
    """A tenant's security policy, enforced on every request made in the tenant."""

    require_2fa = models.BooleanField(default=False)
    min_password_length = models.PositiveSmallIntegerField(default=10)
    session_idle_timeout_minutes = models.PositiveIntegerField(null=True, blank=True)
    session_max_lifetime_hours = models.PositiveIntegerField(null=True, blank=True)
    token_max_lifetime_days = models.PositiveIntegerField(null=True, blank=True)
    ip_allowlist = models.JSONField(default=list, blank=True, help_text="CIDRs; empty = every address")
    event_retention_days = models.PositiveIntegerField(default=365)

    # Recorded by ``services.policy_update`` by hand: audit.snapshot would drop min_password_length
    # (it leaves out every field named like a password).
    audit_fields = (
        "require_2fa",
        "min_password_length",
        "session_idle_timeout_minutes",
        "session_max_lifetime_hours",
        "token_max_lifetime_days",
        "ip_allowlist",
        "event_retention_days",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="uniq_security_policy_tenant")]
        verbose_name_plural = "security policies"

    def __str__(self) -> str:
        return f"Security policy of {self.tenant}"


class SessionTenantUse(models.Model):
    """When a bearer session last acted in a tenant whose policy sets an idle timeout: that tenant's
    timeout is measured here, so it governs the session in that tenant only."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey("accounts.AuthToken", on_delete=models.CASCADE, related_name="+", db_index=False)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    last_used_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "tenant"], name="uniq_session_tenant_use")]
        indexes = [models.Index(fields=["tenant"])]

    def __str__(self) -> str:
        return f"session {self.session_id} in {self.tenant_id}"


class ApiToken(TenantOwnedModel):
    """A personal API token ``mp_…`` bound to one tenant and a maximum role. Only its hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="First characters of the secret, for display.")
    key_hash = models.CharField(max_length=64, unique=True)
    max_role = models.CharField(max_length=8, choices=Role.choices)
    expires_at = models.DateTimeField(null=True, blank=True)
    allowed_ips = models.JSONField(default=list, blank=True, help_text="CIDRs; empty = every address")
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    seen_ips = models.JSONField(default=list, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    audit_fields = ("name", "user", "max_role", "expires_at", "allowed_ips", "prefix")

    class Meta:
        verbose_name = "API token"
        verbose_name_plural = "API tokens"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "user"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_live(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class RecoveryCode(models.Model):
    """One single-use 2FA recovery code, stored as a SHA-256 hash of an 80-bit random value."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes", db_index=False
    )
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["user", "code_hash"], name="uniq_recovery_code")]

    def __str__(self) -> str:
        return f"Recovery code of {self.user}"


class MfaChallenge(TimestampedModel):
    """The pending second step of a login: the signed ``mfa_token`` names it; used once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveSmallIntegerField(default=0)
    ip = models.GenericIPAddressField(null=True, blank=True)

    def __str__(self) -> str:
        return f"mfa challenge {self.pk}"


class ShieldPolicy(TenantOwnedModel):
    """A web application firewall policy: tenant-wide (``site`` empty) or for one website (its host name)."""

    site = models.CharField(max_length=253, blank=True, help_text="Host name; empty = every site of the tenant.")
    enabled = models.BooleanField(default=True)
    rate_limit_per_second = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_burst = models.PositiveIntegerField(default=20)
    allow_cidrs = models.JSONField(default=list, blank=True)
    block_cidrs = models.JSONField(default=list, blank=True)
    blocked_user_agents = models.JSONField(default=list, blank=True)
    blocked_paths = models.JSONField(default=list, blank=True)
    max_body_size_kb = models.PositiveIntegerField(null=True, blank=True)
    maintenance_mode = models.BooleanField(default=False)

    audit_fields = (
        "site",
        "enabled",
        "rate_limit_per_second",
        "rate_limit_burst",
        "allow_cidrs",
        "block_cidrs",
        "blocked_user_agents",
        "blocked_paths",
        "max_body_size_kb",
        "maintenance_mode",
    )

    class Meta:
        verbose_name = "Shield policy"
        verbose_name_plural = "Shield policies"
        ordering = ["site"]
        constraints = [models.UniqueConstraint(fields=["tenant", "site"], name="uniq_shield_policy_site")]

    def __str__(self) -> str:
        return f"Shield policy for {self.site or 'every site'}"


class ShieldEvent(TenantOwnedModel):
    """A request the shield blocked on a node (ingested from the node's log).

    From a node's report, ``node``, ``website`` and ``request_id`` (nginx's ``$request_id``) are
    set, and a request is stored once per node however often a batch is sent again."""

    node = models.ForeignKey("nodes.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    website = models.ForeignKey("websites.Website", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    request_id = models.CharField(max_length=32, blank=True)
    occurred_at = models.DateTimeField(db_index=True)
    ip = models.GenericIPAddressField()
    rule = models.CharField(max_length=32)
    site = models.CharField(max_length=253, blank=True)
    method = models.CharField(max_length=10, blank=True)
    path = models.CharField(max_length=1000, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)

    class Meta:
        verbose_name = "Shield event"
        verbose_name_plural = "Shield events"
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["tenant", "rule", "-occurred_at"]),
            models.Index(fields=["tenant", "-occurred_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["node", "request_id"], condition=~models.Q(request_id=""), name="uniq_shield_event_request"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule} {self.ip}"


class FindingStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class GuardianFinding(TenantOwnedModel):
    """One problem a Guardian check found on one resource. At most one unresolved finding per
    (check, resource): a rescan updates it, and resolves it when the problem is gone."""

    check_name = models.CharField(max_length=64)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    title = models.CharField(max_length=200)
    resource_type = models.CharField(max_length=64)
    resource_id = models.CharField(max_length=64)
    resource_repr = models.CharField(max_length=200, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    remediation = models.TextField(blank=True)  # how to fix it, for the tenant
    status = models.CharField(max_length=16, choices=FindingStatus.choices, default=FindingStatus.OPEN)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "Guardian finding"
        verbose_name_plural = "Guardian findings"
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "check_name", "resource_type", "resource_id"],
                condition=~models.Q(status="resolved"),
                name="uniq_unresolved_finding",
            )
        ]
        indexes = [models.Index(fields=["tenant", "status", "-last_seen_at"])]

    def __str__(self) -> str:
        return f"{self.check_name}: {self.resource_repr or self.resource_id}"


class GuardianCheckRun(TenantOwnedModel):
    """The last run of one check for one tenant: when, and whether it could look at everything
    (a node that did not answer leaves its resources' findings as they were)."""

    check_name = models.CharField(max_length=64)
    ran_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField(default=True)
    error = TenantErrorField(blank=True)  # tenant-safe (apps.jobs.errors)
    hits = models.PositiveIntegerField(default=0)
    unknown = models.PositiveIntegerField(default=0)  # resources it could not check this time

    class Meta:
        verbose_name = "Guardian check run"
        verbose_name_plural = "Guardian check runs"
        ordering = ["check_name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "check_name"], name="uniq_guardian_check_run")]

    def __str__(self) -> str:
        return f"{self.check_name} at {self.ran_at:%Y-%m-%d %H:%M}"
