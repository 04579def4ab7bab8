import secrets

from django.db import models

from apps.customers.models import Customer
from apps.jobs.errors import TenantErrorField
from apps.tenancy.models import TenantOwnedModel

CHALLENGE_LABEL = "_mpanel-challenge"
CHALLENGE_PREFIX = "mpanel-verification="


class DomainStatus(models.TextChoices):
    PENDING_VERIFICATION = "pending_verification", "Pending verification"
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    TRANSFERRED_OUT = "transferred_out", "Transferred out"


class RegistrarStatus(models.TextChoices):
    """Where the last registrar operation (a job) stands."""

    PENDING = "pending", "Pending"  # a register/renew/nameserver/transfer job waits or runs
    OK = "ok", "OK"
    ERROR = "error", "Error"  # the last one failed for good (see last_error; retry it at /ops/provisioning)


def _token() -> str:
    return secrets.token_urlsafe(24)


class Domain(TenantOwnedModel):
    """A registered domain of a tenant's customer. ``name`` is the IDNA (A-label) form.

    Ownership is proven by a TXT record ``_mpanel-challenge.<name>`` holding
    ``mpanel-verification=<verification_token>``; only then is the domain ``active``.
    """

    name = models.CharField(max_length=253)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=24, choices=DomainStatus.choices, default=DomainStatus.PENDING_VERIFICATION)
    registrar = models.CharField(max_length=32, default="manual")
    registered_at = models.DateField(null=True, blank=True)
    expires_at = models.DateField(null=True, blank=True)
    auto_renew = models.BooleanField(default=True)
    nameservers = models.JSONField(default=list, blank=True)
    renewal_price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    verification_token = models.CharField(max_length=64, default=_token, editable=False)
    verified_at = models.DateTimeField(null=True, blank=True)
    registrar_state = models.CharField(max_length=8, choices=RegistrarStatus.choices, default=RegistrarStatus.PENDING)
    # Nameservers asked for and not yet confirmed by the registrar (null: nothing asked).
    pending_nameservers = models.JSONField(null=True, blank=True)
    last_error = TenantErrorField(blank=True)  # tenants read it: redacted (apps.jobs.errors)

    audit_fields = (
        "name", "customer", "status", "registrar", "registered_at", "expires_at", "auto_renew", "nameservers",
        "renewal_price", "verified_at", "registrar_state", "pending_nameservers",
    )  # fmt: skip

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="uniq_domain_name"),
            models.CheckConstraint(condition=models.Q(renewal_price__gte=0), name="domain_renewal_price_gte_0"),
        ]
        indexes = [
            models.Index(fields=["tenant", "name"], name="domain_tenant_name"),
            models.Index(fields=["status", "expires_at"], name="domain_status_expiry"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def unicode_name(self) -> str:
        import dns.name

        return dns.name.from_text(self.name).to_unicode().rstrip(".")

    @property
    def challenge_name(self) -> str:
        return f"{CHALLENGE_LABEL}.{self.name}."

    @property
    def challenge_value(self) -> str:
        return CHALLENGE_PREFIX + self.verification_token
