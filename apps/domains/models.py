import secrets

from django.db import models

from apps.billing.models import Subscription
from apps.customers.models import Customer
from apps.jobs.errors import TenantErrorField
from apps.tenancy.models import Tenant, TenantOwnedModel, TimestampedModel

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
    # The subscription that sold this registration (a ``domain`` product): it bills the renewals, so
    # the domain's own auto-renew stays off. Null: a domain managed by hand.
    subscription = models.ForeignKey(Subscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The transfer code the registry holds for this domain (EPP authInfo), a Fernet token; never in the API.
    auth_info_encrypted = models.TextField(blank=True, editable=False)

    audit_fields = (
        "name", "customer", "status", "registrar", "registered_at", "expires_at", "auto_renew", "nameservers",
        "renewal_price", "verified_at", "registrar_state", "pending_nameservers", "subscription",
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


class FailedRegistration(models.TextChoices):
    """What happens to a paid registration the registry refused for good."""

    REFUND = "refund", "Refund to the customer's credit and cancel"
    RETRY = "retry", "Keep the payment; staff retry the registration"


class DomainSettings(TimestampedModel):
    """A tenant's domain configuration (one row per tenant, made on first use): the nameservers its
    zones and registrations use, what a failed paid registration does, and its EPP account.

    The EPP password and client key are Fernet tokens (apps/domains/crypto.py); the services
    take them in clear and never answer them."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="domain_settings")
    nameservers = models.JSONField(
        default=list, blank=True,
        help_text="The nameservers of this tenant's zones and registrations; empty: the platform's "
        "(MPANEL_DNS_NAMESERVERS).",
    )  # fmt: skip
    registrar = models.CharField(max_length=32, default="manual", help_text="The driver paid registrations go through.")
    on_failed_registration = models.CharField(max_length=8, choices=FailedRegistration.choices,
                                              default=FailedRegistration.REFUND)  # fmt: skip
    epp_host = models.CharField("EPP host", max_length=253, blank=True)
    epp_port = models.PositiveIntegerField("EPP port", default=700)
    epp_client_id = models.CharField("EPP client id", max_length=16, blank=True)
    epp_password_encrypted = models.TextField(blank=True, editable=False)
    epp_client_cert = models.TextField("EPP TLS client certificate (PEM)", blank=True)
    epp_client_key_encrypted = models.TextField(blank=True, editable=False)
    epp_ca_cert = models.TextField("EPP server CA (PEM)", blank=True,
                                   help_text="Trust this CA for the registry instead of the system's.")  # fmt: skip
    # The tenant's own handles at the registry for the admin/tech/billing roles (many registries
    # require them); empty: the registrant's contact takes the role.
    epp_admin_contact = models.CharField(max_length=16, blank=True)
    epp_tech_contact = models.CharField(max_length=16, blank=True)
    epp_billing_contact = models.CharField(max_length=16, blank=True)

    audit_fields = (
        "nameservers", "registrar", "on_failed_registration", "epp_host", "epp_port", "epp_client_id",
        "epp_client_cert", "epp_ca_cert", "epp_admin_contact", "epp_tech_contact", "epp_billing_contact",
    )  # fmt: skip

    class Meta:
        verbose_name = "domain settings"
        verbose_name_plural = "domain settings"
        constraints = [models.CheckConstraint(condition=models.Q(epp_port__gte=1, epp_port__lte=65535),
                                              name="domain_settings_epp_port_range")]  # fmt: skip

    def __str__(self) -> str:
        return f"Domain settings of {self.tenant}"

    @property
    def epp_configured(self) -> bool:
        return bool(self.epp_host and self.epp_client_id and self.epp_password_encrypted)
