from decimal import Decimal

from django.db import models

from apps.jobs.errors import TenantErrorField
from apps.nodes.models import Node
from apps.tenancy.models import TenantOwnedModel


class PodStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROVISIONING = "provisioning", "Provisioning"
    RUNNING = "running", "Running"
    SUSPENDED = "suspended", "Suspended"
    RESIZING = "resizing", "Resizing"
    DELETING = "deleting", "Deleting"
    DELETED = "deleted", "Deleted"
    ERROR = "error", "Error"


LIVE = [s for s in PodStatus.values if s != PodStatus.DELETED]


class CloudPod(TenantOwnedModel):
    """A small private server: one runc container on one node.

    ``status`` is the wanted state as far as the panel knows it; the jobs converge the node to
    it. ``vcpu``/``memory_mb``/``disk_gb``/``pids`` are what is reserved on ``node`` (the plan's
    figures when it was reserved), until the pod is deleted.
    """

    name = models.CharField(max_length=63)
    plan = models.CharField(max_length=64)
    image = models.CharField(max_length=64, default="busybox")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="pods", db_index=False)
    status = models.CharField(max_length=12, choices=PodStatus.choices, default=PodStatus.PENDING)
    container_id = models.CharField(max_length=128, unique=True)

    vcpu = models.DecimalField(max_digits=7, decimal_places=2, default=Decimal("1"))
    memory_mb = models.PositiveIntegerField()
    disk_gb = models.PositiveIntegerField()
    pids = models.PositiveIntegerField()

    # Billing is not built yet: an opaque reference to the subscription this pod is sold under.
    subscription = models.CharField(max_length=64, null=True, blank=True)
    last_error = TenantErrorField(blank=True)  # tenants read it: redacted (apps.jobs.errors)
    deleted_at = models.DateTimeField(null=True, blank=True)

    # What the audit trail records of a pod's before/after (apps.audit.services.snapshot).
    audit_fields = ("name", "plan", "image", "node", "status", "vcpu", "memory_mb", "disk_gb", "pids", "subscription")

    class Meta:
        verbose_name = "CloudPod"
        verbose_name_plural = "CloudPods"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], condition=~models.Q(status="deleted"), name="uniq_live_pod_name"
            ),
            models.UniqueConstraint(
                fields=["tenant", "subscription"],
                condition=~models.Q(status="deleted") & models.Q(subscription__isnull=False),
                name="uniq_live_pod_subscription",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["tenant", "status"]),
            models.Index(fields=["node", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class TenantQuota(TenantOwnedModel):
    """An operator's override of the platform's pod quota for one tenant (empty: the platform default).

    Set in the admin only: a tenant must not raise its own limits through the API.
    """

    max_pods = models.PositiveIntegerField(null=True, blank=True, help_text="empty: CLOUDPOD_TENANT_MAX_PODS")
    max_memory_mb = models.PositiveIntegerField(null=True, blank=True, help_text="empty: CLOUDPOD_TENANT_MAX_MEMORY_MB")
    note = models.CharField(max_length=200, blank=True, help_text="why this tenant has other limits")

    class Meta:
        verbose_name = "pod quota"
        verbose_name_plural = "pod quotas"
        constraints = [models.UniqueConstraint(fields=["tenant"], name="cloudpod_quota_one_per_tenant")]

    def __str__(self) -> str:
        return f"Pod quota of {self.tenant}"
