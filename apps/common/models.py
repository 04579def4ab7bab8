import uuid

from django.conf import settings
from django.db import models


class IdempotencyRecord(models.Model):
    """The first answer to a POST sent with an ``Idempotency-Key`` header, replayed to repeats."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress"
        DONE = "done"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Who sent it, in any realm: "user:<pk>" for staff, "portal:<pk>" for a customer's portal user
    # (a user model may name itself with ``idempotency_principal``); ``user`` is set for staff only.
    principal = models.CharField(max_length=100)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # Not a TenantOwnedModel: creating a tenant is itself idempotent and has no tenant yet.
    tenant_key = models.CharField(max_length=36, blank=True)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["principal", "tenant_key", "key"], name="uniq_idempotency_principal_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"
