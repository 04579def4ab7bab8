from django.db import models

from apps.jobs.errors import TenantErrorField
from apps.nodes.models import Node
from apps.tenancy.models import TenantOwnedModel

RECORD_TYPES = ["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "NS", "PTR"]
RECORD_TYPE_CHOICES = [(t, t) for t in RECORD_TYPES]


class ZoneStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # a change is waiting for its job
    ACTIVE = "active", "Active"  # the node serves the current serial
    ERROR = "error", "Error"  # the last push failed for good (see last_error)
    DELETING = "deleting", "Deleting"


class Zone(TenantOwnedModel):
    """An authoritative zone served by one of the tenant's ``dns`` nodes.

    ``name`` is the IDNA (A-label) form without the trailing dot. ``serial`` is YYYYMMDDnn, bumped by
    every change (services.bump_serial); ``served_serial`` is what the node last confirmed.
    """

    name = models.CharField(max_length=253)
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=12, choices=ZoneStatus.choices, default=ZoneStatus.PENDING)
    serial = models.BigIntegerField(default=0)
    served_serial = models.BigIntegerField(null=True, blank=True)
    default_ttl = models.PositiveIntegerField(default=3600)
    soa_mname = models.CharField(max_length=253)
    soa_rname = models.CharField(max_length=253)
    soa_refresh = models.PositiveIntegerField(default=10800)
    soa_retry = models.PositiveIntegerField(default=3600)
    soa_expire = models.PositiveIntegerField(default=604800)
    soa_minimum = models.PositiveIntegerField(default=3600)
    last_error = TenantErrorField(blank=True)  # tenants read it: redacted (apps.jobs.errors)

    audit_fields = ("name", "node", "status", "serial", "default_ttl", "soa_mname", "soa_rname", "soa_refresh",
                    "soa_retry", "soa_expire", "soa_minimum")  # fmt: skip

    class Meta:
        verbose_name = "DNS zone"
        verbose_name_plural = "DNS zones"
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_dns_zone_name")]
        indexes = [models.Index(fields=["tenant", "name"], name="dns_zone_tenant_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def origin(self) -> str:
        return self.name + "."


class Record(TenantOwnedModel):
    """One resource record. ``name`` is relative to the zone (``@`` is the apex); ``content`` is the
    rdata in presentation format with absolute names (``10 mail.example.com.``), as dnspython prints it."""

    zone = models.ForeignKey(Zone, on_delete=models.CASCADE, related_name="records")
    name = models.CharField(max_length=253, default="@")
    type = models.CharField(max_length=8, choices=RECORD_TYPE_CHOICES)
    ttl = models.PositiveIntegerField(null=True, blank=True)  # empty: the zone's default_ttl
    content = models.TextField()

    audit_fields = ("zone", "name", "type", "ttl", "content")

    class Meta:
        verbose_name = "DNS record"
        verbose_name_plural = "DNS records"
        ordering = ["name", "type", "content"]
        indexes = [models.Index(fields=["tenant", "zone", "name", "type"], name="dns_record_tenant_zone")]

    def __str__(self) -> str:
        return f"{self.name} {self.type} {self.content}"
