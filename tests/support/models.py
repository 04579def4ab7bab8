from django.db import models

from apps.tenancy.models import TenantOwnedModel


class JobEffect(models.Model):
    """The visible effect of a test job: one row per key, however often the job runs."""

    key = models.CharField(max_length=100, unique=True)
    runs = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class JobCall(models.Model):
    """Every time a test handler was entered (to count runs, unlike the effect)."""

    key = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class Gadget(TenantOwnedModel):
    """A provisioned resource of the kernel's own tests (apps.jobs.lifecycle, ResourceViewSet)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        ACTIVE = "active"
        SUSPENDED = "suspended"
        DELETING = "deleting"
        DELETED = "deleted"
        ERROR = "error"

    name = models.CharField(max_length=50)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    size = models.PositiveIntegerField(default=1)
    secret_token = models.CharField(max_length=50, blank=True)
    last_error = models.TextField(blank=True)

    audit_fields = ("name", "status", "size")

    class Meta(TenantOwnedModel.Meta):
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return self.name
