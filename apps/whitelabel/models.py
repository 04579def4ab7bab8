"""A tenant's brand (what its customers see instead of the platform) and its custom portal domains."""

from __future__ import annotations

import secrets

from django.db import models
from django_countries.fields import CountryField

from apps.tenancy.models import TenantOwnedModel

DEFAULT_PRIMARY = "#1f4fd1"  # 6.3:1 against white: readable as link text and under white button text
DEFAULT_ACCENT = "#0f766e"


class Brand(TenantOwnedModel):
    """One per tenant. A tenant without one is shown under its own name (``selectors.brand_for``)."""

    display_name = models.CharField(max_length=100)
    # The logo lives in the default storage (``MPANEL_VAR_DIR/media`` or object storage); these
    # describe what was validated when it was uploaded.
    logo = models.CharField(max_length=255, blank=True, help_text="the file's name in the default storage")
    logo_content_type = models.CharField(max_length=32, blank=True)
    logo_sha256 = models.CharField(max_length=64, blank=True)
    logo_size = models.PositiveIntegerField(default=0)
    logo_width = models.PositiveIntegerField(null=True, blank=True)
    logo_height = models.PositiveIntegerField(null=True, blank=True)
    primary_color = models.CharField(max_length=7, default=DEFAULT_PRIMARY)
    accent_color = models.CharField(max_length=7, default=DEFAULT_ACCENT)
    support_email = models.EmailField(blank=True)
    support_url = models.URLField(blank=True)
    support_phone = models.CharField(max_length=32, blank=True)
    # Where customers' e-mails come From. On a mail domain of this tenant hosted here (with its DKIM
    # key), they are sent from it, DKIM-signed; otherwise from the platform's address, under the
    # brand's name, with this as Reply-To when there is no support address.
    sender_email = models.EmailField(blank=True)
    # The seller on invoices (EU VAT directive art. 226: full name and address, VAT id).
    legal_name = models.CharField(max_length=200, blank=True)
    address_line1 = models.CharField(max_length=200, blank=True)
    address_line2 = models.CharField(max_length=200, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    city = models.CharField(max_length=100, blank=True)
    region = models.CharField(max_length=100, blank=True)
    country = CountryField(blank=True)
    vat_id = models.CharField(max_length=32, blank=True)
    registration_number = models.CharField(max_length=64, blank=True)
    invoice_footer = models.TextField(max_length=1000, blank=True)
    terms_url = models.URLField(blank=True)
    # Vanity name servers (``ns1.brand.com``…): the apex NS and SOA primary of the zones the tenant
    # serves here. Empty: the platform's (``MPANEL_DNS_NAMESERVERS``). Their addresses (glue) are the
    # tenant's business, at its registrar.
    nameservers = models.JSONField(default=list, blank=True, help_text="at least two host names, or none")
    # The set last written into the tenant's zones (``services.nameservers_apply``): zones still
    # listing these are ours to rewrite when the set changes.
    nameservers_applied = models.JSONField(default=list, blank=True)

    audit_fields = (
        "display_name", "logo", "logo_sha256", "primary_color", "accent_color", "support_email", "sender_email",
        "support_url", "support_phone", "legal_name", "address_line1", "address_line2", "postal_code", "city", "region",
        "country", "vat_id", "registration_number", "invoice_footer", "terms_url", "nameservers", "nameservers_applied",
    )  # fmt: skip

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="uniq_brand_tenant")]

    def __str__(self) -> str:
        return self.display_name


class DomainStatus(models.TextChoices):
    PENDING = "pending", "Waiting for the DNS record"
    VERIFIED = "verified", "Verified"


class CertificateKind(models.TextChoices):
    NONE = "", "None"
    SELF_SIGNED = "self-signed", "Self-signed (browsers warn)"
    ACME = "acme", "Trusted (ACME)"


def new_token() -> str:
    return secrets.token_urlsafe(24)


class CustomDomain(TenantOwnedModel):
    """A host name (``my.brand.com``) under which the tenant's customers reach its portal, once the
    tenant proved it controls the name by a TXT record at ``_mpanel-verify.<host>``."""

    hostname = models.CharField(max_length=253)
    token = models.CharField(max_length=64, default=new_token, editable=False)
    status = models.CharField(max_length=16, choices=DomainStatus.choices, default=DomainStatus.PENDING)
    verified_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    # What TLS for this host serves: the SSL module's trusted certificate (``acme``) once it is issued;
    # a self-signed one, shown as such, while it is issuing or when issuance failed.
    certificate = models.ForeignKey(
        "ssl.Certificate", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="the trusted certificate the SSL module issues for this host (ACME, renewed by its sweep)",
    )  # fmt: skip
    certificate_kind = models.CharField(max_length=16, choices=CertificateKind.choices, blank=True, default="")
    certificate_pem = models.TextField(blank=True)
    certificate_key_encrypted = models.TextField(blank=True)
    certificate_not_after = models.DateTimeField(null=True, blank=True)
    certificate_sha256 = models.CharField(max_length=95, blank=True)

    audit_fields = ("hostname", "status", "verified_at", "certificate_kind", "certificate_sha256")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "hostname"], name="uniq_custom_domain_tenant_host"),
            # Several tenants may claim a name while it is pending (nobody can squat it); only the
            # one that proves it holds it.
            models.UniqueConstraint(
                fields=["hostname"], condition=models.Q(status="verified"), name="uniq_custom_domain_verified_host"
            ),
        ]
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    @property
    def record_name(self) -> str:
        return f"_mpanel-verify.{self.hostname}"

    @property
    def record_value(self) -> str:
        return f"mpanel-verify={self.token}"
