import hashlib
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import connection, models

from agent import tls
from apps.jobs.errors import TenantErrorField
from apps.tenancy.models import TenantOwnedModel

ROLE_CHOICES = ["pods", "web", "mail", "dns", "db", "backup"]


class NodeStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DRAINING = "draining", "Draining"  # runs what it has, takes nothing new
    MAINTENANCE = "maintenance", "Maintenance"
    OFFLINE = "offline", "Offline"  # set by the heartbeat check, never by hand


# What a tenant may set; "offline" is set by the heartbeat check only.
SETTABLE_STATUSES = [(s.value, s.label) for s in (NodeStatus.ACTIVE, NodeStatus.DRAINING, NodeStatus.MAINTENANCE)]


class Transport(models.TextChoices):
    LOCAL = "local", "Local (in-process)"
    AGENT = "agent", "Agent (signed HTTPS, pinned certificate)"


class Node(TenantOwnedModel):
    """A server that runs a tenant's workloads, with its capacity and what is allocated on it.

    ``allocated_*`` are changed only by services holding this row's lock (select_for_update),
    in the same transaction as the pod rows they account for.
    """

    hostname = models.CharField(max_length=253)
    address = models.CharField(
        max_length=300, blank=True, help_text="agent transport: https://host:port (http:// on loopback only)"
    )
    transport = models.CharField(max_length=8, choices=Transport.choices, default=Transport.LOCAL)
    roles = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=12, choices=NodeStatus.choices, default=NodeStatus.ACTIVE)
    status_before_offline = models.CharField(max_length=12, choices=NodeStatus.choices, blank=True)

    vcpu = models.DecimalField(max_digits=7, decimal_places=2, validators=[MinValueValidator(Decimal("0"))])
    memory_mb = models.PositiveIntegerField()
    disk_gb = models.PositiveIntegerField()
    max_pods = models.PositiveIntegerField()

    allocated_vcpu = models.DecimalField(max_digits=7, decimal_places=2, default=Decimal("0"))
    allocated_memory_mb = models.PositiveIntegerField(default=0)
    allocated_disk_gb = models.PositiveIntegerField(default=0)
    allocated_pods = models.PositiveIntegerField(default=0)

    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    reported = models.JSONField(default=dict, blank=True)  # the node's last heartbeat answer
    last_error = TenantErrorField(blank=True)  # tenants read it: redacted (apps.jobs.errors)

    # The agent's secret is derived from SECRET_KEY and this salt (apps.nodes.agent_secret); only its hash is kept.
    secret_salt = models.CharField(max_length=64, blank=True)
    secret_hash = models.CharField(max_length=64, blank=True)
    # A rotation keeps the previous salt valid until ``secret_previous_until`` (the grace period).
    secret_salt_previous = models.CharField(max_length=64, blank=True)
    secret_previous_until = models.DateTimeField(null=True, blank=True)
    # The SHA-256 of the agent certificate's public key (agent.tls), checked on every connection;
    # ``_next`` is accepted too while the node's certificate is being rotated.
    # Stored as 64 hex; longer input forms (sha256:…, colon-separated) are normalised by clean().
    tls_fingerprint = models.CharField(max_length=128, blank=True)
    tls_fingerprint_next = models.CharField(max_length=128, blank=True)

    audit_fields = (
        "hostname",
        "address",
        "transport",
        "roles",
        "status",
        "vcpu",
        "memory_mb",
        "disk_gb",
        "max_pods",
        "tls_fingerprint",
        "tls_fingerprint_next",
    )

    class Meta:
        ordering = ["hostname"]
        constraints = [models.UniqueConstraint(fields=["tenant", "hostname"], name="uniq_node_hostname")]
        indexes = [models.Index(fields=["tenant", "hostname"]), models.Index(fields=["status", "last_heartbeat_at"])]

    def __str__(self) -> str:
        return self.hostname

    def clean(self):
        """The transport rules, in one place for the API (services save through full_clean) and the
        admin's forms: an address is https://host:port (http:// only on loopback, agent.tls), an
        agent node has an address, and an https agent has the pin of its certificate."""
        errors = {}
        if self.address:
            try:
                self.address = tls.parse_address(self.address).url
            except ValueError as exc:
                errors["address"] = str(exc)
        for field in ("tls_fingerprint", "tls_fingerprint_next"):
            if getattr(self, field):
                try:
                    setattr(self, field, tls.normalize_fingerprint(getattr(self, field)))
                except ValueError as exc:
                    errors[field] = str(exc)
        if self.transport == Transport.AGENT and "address" not in errors:
            if not self.address:
                errors["address"] = "The agent transport needs the agent's address (https://host:port)."
            elif self.address.startswith("https://") and not self.tls_fingerprint:
                errors["tls_fingerprint"] = (
                    "Give the pin of the agent's certificate: `python -m agent fingerprint` on the node prints it."
                )
        if errors:
            raise ValidationError(errors)

    @property
    def free_vcpu(self) -> Decimal:
        return self.vcpu - self.allocated_vcpu

    @property
    def free_memory_mb(self) -> int:
        return self.memory_mb - self.allocated_memory_mb

    @property
    def free_disk_gb(self) -> int:
        return self.disk_gb - self.allocated_disk_gb

    @property
    def free_pods(self) -> int:
        return self.max_pods - self.allocated_pods

    def fits(self, *, vcpu, memory_mb: int, disk_gb: int, pods: int = 1) -> bool:
        return (
            self.free_vcpu >= Decimal(str(vcpu))
            and self.free_memory_mb >= memory_mb
            and self.free_disk_gb >= disk_gb
            and self.free_pods >= pods
        )

    @staticmethod
    def hash_secret(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()


def with_role(role: str) -> models.Q:
    """Nodes that have ``role``. JSON containment is PostgreSQL's (and indexable there); the embedded
    SQLite has none, so there the quoted name is looked for in the JSON text (roles are a fixed set
    of plain words, so '"db"' matches only the role db)."""
    if connection.vendor == "postgresql":
        return models.Q(roles__contains=[role])
    return models.Q(roles__icontains=f'"{role}"')
