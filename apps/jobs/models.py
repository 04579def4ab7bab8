from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.tenancy.models import TenantOwnedModel

from .errors import TenantErrorField


class JobStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    RUNNING = "RUNNING", "Running"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"


OPEN_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)
FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
OPEN = models.Q(status__in=OPEN_STATUSES)
FINISHED = models.Q(status__in=FINISHED_STATUSES)
CREATED_BY_SET = models.Q(created_by__isnull=False)


class Job(TenantOwnedModel):
    """One change to infrastructure: stored first, then delivered to a worker (docs/api.md).

    The row is the truth and Celery only the delivery: a lost message or a killed worker is
    found again by the sweeper from this row.
    """

    # No LIKE twin of ``type``'s index (nothing looks types up by prefix): every claim and finish changes
    # ``status``, so each index here is written again on each of them.
    type = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.PENDING)
    payload = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    # What the tenant reads (apps.jobs.errors: the safe message or "Internal error (reference …)");
    # error_detail is the operator's (type, message, traceback), shown in the admin only.
    last_error = TenantErrorField(blank=True)
    error_detail = models.TextField(blank=True)
    run_after = models.DateTimeField(default=timezone.now)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Indexed by ``jobs_job_created_by_idx``, only where set: the workers' and the schedules' jobs have none.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="uniq_job_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["tenant", "status", "-created_at"]),
            models.Index(fields=["type"], name="jobs_job_type_idx"),  # the operators' filter across tenants
            models.Index(fields=["object_type", "object_id"]),
            # Partial: a job's claim and finish change its status, so each writes every index of the row
            # again, but only into the partial indexes whose condition the new row meets. The open jobs
            # (the sweeper's and the queue's) and the finished ones (the dashboards' "failed in the last
            # 24 h") each have their own; between them every status filter across tenants has one.
            models.Index(fields=["status", "run_after"], condition=OPEN, name="jobs_job_open_idx"),
            models.Index(fields=["status", "finished_at"], condition=FINISHED, name="jobs_job_finished_idx"),
            models.Index(fields=["created_by"], condition=CREATED_BY_SET, name="jobs_job_created_by_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} [{self.status}]"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class JobAttempt(models.Model):
    """The history of a job's runs; never edited."""

    # Indexed by ``uniq_job_attempt`` (job, number), which leads with it.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_log", db_index=False)
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, blank=True)  # succeeded | failed | lost
    error = TenantErrorField(blank=True)  # as Job.last_error; ``detail`` as Job.error_detail
    detail = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="uniq_job_attempt")]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.number} {self.outcome}"
