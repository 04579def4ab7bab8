import uuid

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One mutation: who did what to which object, with the changed fields before and after.

    Append-only. Not a tenant-scoped model on purpose: operator and system actions may have no
    tenant, and the API reads it through an explicit tenant filter.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    tenant = models.ForeignKey(
        # DO_NOTHING without a constraint: a deleted tenant's trail keeps pointing at it.
        "tenancy.Tenant",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,  # the (tenant, -created_at) index leads with it: one index less on every mutation
    )
    # Indexed by ``audit_event_actor_idx``, only where set: the workers' and the system's events (a job's
    # outcome, a payment applied from a webhook) have no actor, and are written the most.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    actor_email = models.CharField(max_length=254, blank=True, help_text="Kept if the user is deleted.")
    via = models.CharField(max_length=16, default="system")
    action = models.CharField(max_length=100)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True, help_text='{"field": [before, after]}')
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["object_type", "object_id"]),
            models.Index(fields=["action", "-created_at"]),
            models.Index(fields=["actor"], condition=models.Q(actor__isnull=False), name="audit_event_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"
