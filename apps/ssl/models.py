"""SSL certificates (docs/modules/ssl.md): issued by an ACME CA, uploaded, or self-signed.

A ``Certificate`` is tenant-owned. Its private key is a Fernet token (``key_encrypted``, the panel's
HKDF-derived key: ``apps/ssl/crypto.py``); no list, answer, audit record, log line or job payload
ever holds the key itself. While an ACME order runs, the order's URL, its CSR and the new key
(``pending_key_encrypted``) are stored at each step, so a worker killed at any point resumes the
same order instead of placing a second one; the certificate being renewed keeps serving meanwhile.
"""

from __future__ import annotations

from django.db import models

from apps.jobs.errors import TenantErrorField
from apps.nodes.models import Node
from apps.tenancy.models import TenantOwnedModel
from apps.websites.models import Website


class CertificateSource(models.TextChoices):
    ACME = "acme", "ACME"
    UPLOADED = "uploaded", "Uploaded"
    SELF_SIGNED = "self_signed", "Self-signed"


class CertificateStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # asked for; the issue job has not started
    ISSUING = "issuing", "Issuing"  # an ACME order is under way
    VALID = "valid", "Valid"
    RENEWING = "renewing", "Renewing"  # a new order is under way; the current certificate still serves
    EXPIRED = "expired", "Expired"
    FAILED = "failed", "Failed"  # issuance failed (the CA's error in last_error)
    REVOKED = "revoked", "Revoked"
    DELETED = "deleted", "Deleted"


class Challenge(models.TextChoices):
    HTTP_01 = "http-01", "HTTP-01 (the website's nginx)"
    DNS_01 = "dns-01", "DNS-01 (a TXT record in our DNS)"


class AcmeAccount(TenantOwnedModel):
    """The tenant's account at one ACME directory, registered on first use."""

    directory = models.URLField(max_length=500)
    email = models.EmailField(blank=True)
    uri = models.URLField(max_length=500, blank=True, help_text="the account's URL at the CA")
    key_encrypted = models.TextField(help_text="the account key (PEM), a Fernet token")
    eab_kid = models.CharField(max_length=200, blank=True, help_text="External Account Binding key id")

    audit_fields = ("directory", "email", "uri", "eab_kid")

    class Meta:
        verbose_name = "ACME account"
        ordering = ["directory"]
        constraints = [models.UniqueConstraint(fields=["tenant", "directory"], name="ssl_one_account_per_directory")]

    def __str__(self) -> str:
        return f"{self.email or self.tenant_id} @ {self.directory}"


class Certificate(TenantOwnedModel):
    names = models.JSONField(default=list, help_text="hostnames, the first one the subject")
    website = models.ForeignKey(Website, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The mail node whose Postfix and Dovecot serve it for its names (the mail hostnames), if any.
    mail_node = models.ForeignKey(Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source = models.CharField(max_length=12, choices=CertificateSource.choices, default=CertificateSource.ACME)
    challenge = models.CharField(max_length=8, choices=Challenge.choices, default=Challenge.HTTP_01)
    status = models.CharField(max_length=10, choices=CertificateStatus.choices, default=CertificateStatus.PENDING)
    hsts = models.BooleanField(default=False, help_text="send Strict-Transport-Security with this certificate")
    # Issued without anyone asking (a hosting plan with SSL): a first issuance that fails is tried
    # again by the sweep (``failures`` attempts so far, the next at ``retry_after``), up to
    # MPANEL_ACME_ISSUE_RETRIES; someone who asked sees the failure and retries by hand.
    automatic = models.BooleanField(default=False, help_text="auto-issued: a failed issuance is retried by the sweep")
    revoke_on_delete = models.BooleanField(
        null=True,
        blank=True,
        help_text="revoke it at its CA when it, or its website, is deleted (empty: the tenant's SSL settings)",
    )
    # The certificate being served (empty until the first one is issued or uploaded).
    issuer = models.CharField(max_length=500, blank=True)
    serial = models.CharField(max_length=64, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the leaf (DER)")
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    certificate_pem = models.TextField(blank=True)
    chain_pem = models.TextField(blank=True)
    key_encrypted = models.TextField(blank=True)
    # The ACME order under way (each written as its step completes; cleared when it is done).
    account = models.ForeignKey(AcmeAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    order_url = models.URLField(max_length=500, blank=True)
    order_csr = models.TextField(blank=True)
    pending_key_encrypted = models.TextField(blank=True)
    challenges = models.JSONField(default=list, blank=True, help_text="what was put up to answer (to take down)")
    # Renewal: when the sweep renews it, when it may try again after a failure, the alert.
    renew_after = models.DateTimeField(null=True, blank=True)
    ari_next_at = models.DateTimeField(
        null=True, blank=True, help_text="when to ask the CA's renewal information (ARI) again"
    )
    retry_after = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0, help_text="failed attempts since the last success")
    alerted_at = models.DateTimeField(null=True, blank=True)
    installed_fingerprint = models.CharField(max_length=64, blank=True, help_text="what the website's node serves")
    installed_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_error = TenantErrorField(blank=True)  # the CA's error, tenant-safe

    audit_fields = ("names", "website", "mail_node", "source", "challenge", "status", "hsts", "automatic",
                    "revoke_on_delete", "issuer", "serial", "not_after")  # fmt: skip

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "status"]),
            models.Index(fields=["tenant", "not_after"]),
            models.Index(fields=["status", "renew_after"]),
        ]

    def __str__(self) -> str:
        return ", ".join(self.names[:3]) + (" …" if len(self.names) > 3 else "")

    @property
    def serving(self) -> bool:
        """Has a certificate and key to serve (whether or not a renewal runs)."""
        return bool(self.certificate_pem and self.key_encrypted) and self.status in (
            CertificateStatus.VALID,
            CertificateStatus.RENEWING,
        )


class SslSettings(TenantOwnedModel):
    """The tenant's SSL choices (one row per tenant; absent: the defaults)."""

    revoke_on_delete = models.BooleanField(
        default=False,
        help_text="revoke an issued certificate at its CA when it, or its website, is deleted "
        "(a delete's ?revoke=true|false decides for that delete)",
    )

    audit_fields = ("revoke_on_delete",)

    class Meta:
        verbose_name = "SSL settings"
        verbose_name_plural = "SSL settings"
        constraints = [models.UniqueConstraint(fields=["tenant"], name="ssl_one_settings_per_tenant")]

    def __str__(self) -> str:
        return f"SSL settings of {self.tenant}"
