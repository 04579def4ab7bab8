from django.db import models

from apps.customers.models import Customer
from apps.jobs.errors import TenantErrorField
from apps.nodes.models import Node
from apps.tenancy.models import TenantOwnedModel


class MailDomainStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # a change waits for its push to the node
    ACTIVE = "active", "Active"
    ERROR = "error", "Error"


class MailDomain(TenantOwnedModel):
    """A domain whose mail a ``mail`` node receives. ``catch_all``: where mail to unknown addresses
    goes (empty: rejected). The DKIM key pair is made at creation; the private key never leaves
    the panel's database in an answer (``dkim_secret_pem`` is excluded from audit snapshots by name)."""

    name = models.CharField(max_length=253)
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=MailDomainStatus.choices, default=MailDomainStatus.PENDING)
    catch_all = models.CharField(max_length=254, blank=True)
    dkim_selector = models.CharField(max_length=63, default="mp1")
    dkim_secret_pem = models.TextField(blank=True)
    dkim_public_key = models.TextField(blank=True)  # base64 DER SubjectPublicKeyInfo, as in the p= tag
    last_error = TenantErrorField(blank=True)  # tenants read it: redacted (apps.jobs.errors)
    # Suspended (its hosting plan is): the node defers its mail (4xx at RCPT, held in the queue) and
    # refuses its mailboxes' logins; nothing is deleted, and the resume delivers what waited.
    suspended = models.BooleanField(default=False)

    audit_fields = ("name", "node", "customer", "status", "catch_all", "dkim_selector", "dkim_public_key",
                    "suspended")  # fmt: skip

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_mail_domain_name")]
        indexes = [models.Index(fields=["tenant", "name"], name="mail_domain_tenant_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def dkim_record(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.dkim_public_key}"


class Mailbox(TenantOwnedModel):
    """``password_hash`` is a Dovecot scheme-prefixed hash (``{ARGON2ID}$argon2id$…``); the password
    itself is never stored."""

    mail_domain = models.ForeignKey(MailDomain, on_delete=models.CASCADE, related_name="mailboxes", db_index=False)
    local_part = models.CharField(max_length=64)
    password_hash = models.CharField(max_length=255)
    quota_mb = models.PositiveIntegerField(default=1024)  # 0 = unlimited
    enabled = models.BooleanField(default=True)

    audit_fields = ("mail_domain", "local_part", "quota_mb", "enabled")

    class Meta:
        verbose_name = "mailbox"
        verbose_name_plural = "mailboxes"
        ordering = ["local_part"]
        constraints = [models.UniqueConstraint(fields=["mail_domain", "local_part"], name="uniq_mailbox")]
        indexes = [models.Index(fields=["tenant", "mail_domain", "local_part"], name="mailbox_tenant_domain")]

    def __str__(self) -> str:
        return self.address

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.mail_domain.name}"


class Alias(TenantOwnedModel):
    """An alias or forwarder: mail to ``local_part@domain`` goes to every destination (ours or not)."""

    mail_domain = models.ForeignKey(MailDomain, on_delete=models.CASCADE, related_name="aliases", db_index=False)
    local_part = models.CharField(max_length=64)
    destinations = models.JSONField(default=list)

    audit_fields = ("mail_domain", "local_part", "destinations")

    class Meta:
        verbose_name = "alias"
        verbose_name_plural = "aliases"
        ordering = ["local_part"]
        constraints = [models.UniqueConstraint(fields=["mail_domain", "local_part"], name="uniq_mail_alias")]
        indexes = [models.Index(fields=["tenant", "mail_domain", "local_part"], name="alias_tenant_domain")]

    def __str__(self) -> str:
        return f"{self.local_part}@{self.mail_domain.name}"


class Autoresponder(TenantOwnedModel):
    """A vacation reply for one mailbox, rendered on the node as a Sieve ``vacation`` script.

    It answers while ``enabled`` and today (the node's date) is within ``start_date``..``end_date``
    (either end open when empty), at most once per sender every ``interval_days``."""

    mailbox = models.OneToOneField(Mailbox, on_delete=models.CASCADE, related_name="autoresponder")
    enabled = models.BooleanField(default=True)
    subject = models.CharField(max_length=200)
    body = models.TextField(max_length=8000)
    start_date = models.DateField(null=True, blank=True)
    end_date = models.DateField(null=True, blank=True)
    interval_days = models.PositiveSmallIntegerField(default=1)

    audit_fields = ("mailbox", "enabled", "subject", "body", "start_date", "end_date", "interval_days")

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(interval_days__gte=1, interval_days__lte=60), name="autoresponder_interval_1_60"
            ),
            models.CheckConstraint(
                condition=models.Q(start_date__isnull=True)
                | models.Q(end_date__isnull=True)
                | models.Q(end_date__gte=models.F("start_date")),
                name="autoresponder_dates_ordered",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "created_at"], name="autoresponder_tenant_created")]

    def __str__(self) -> str:
        return f"Autoresponder of {self.mailbox}"
