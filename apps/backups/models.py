"""Backups on restic: repositories, policies, snapshots, restores and restore drills.

A resource backed up is named by its kind and id (``resource_kind``, ``resource_id``): the
snapshots of a website outlive the website (a final snapshot is how a mistaken delete is undone),
so they do not hold a foreign key to it. apps/backups/sources.py knows each kind.
"""

from __future__ import annotations

from django.db import models

from apps.customers.models import Customer
from apps.jobs.errors import TenantErrorField
from apps.nodes.models import Node
from apps.tenancy.models import TenantOwnedModel


class Backend(models.TextChoices):
    LOCAL = "local", "Local path on the backup node"
    SFTP = "sftp", "SFTP (OpenSSH) to the backup node"
    S3 = "s3", "S3-compatible object storage"


class RepoStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # the init job has not run yet
    ACTIVE = "active", "Active"
    ERROR = "error", "Error"
    DELETING = "deleting", "Deleting"


class ResourceKind(models.TextChoices):
    WEBSITE = "website", "Website"
    DATABASE = "database", "Database"
    ZONE = "zone", "DNS zone"
    MAILBOX = "mailbox", "Mailbox"
    POD = "pod", "CloudPod"


class BackupRepository(TenantOwnedModel):
    """A restic repository on a node with the ``backup`` role. ``password_encrypted`` is a Fernet
    token (apps/backups/crypto.py): never answered in lists, never in audit records (the name holds
    "password"), never in job payloads (the handler decrypts it for the one node call); ADMIN+ may
    export it after re-authenticating, to restore without mPanel."""

    name = models.CharField(max_length=80)
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="+")
    # A customer's own repository (a hosting plan with backups): its stored bytes are that customer's usage.
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    backend = models.CharField(max_length=12, choices=Backend.choices, default=Backend.LOCAL)
    password_encrypted = models.TextField()
    status = models.CharField(max_length=12, choices=RepoStatus.choices, default=RepoStatus.PENDING)
    size_bytes = models.BigIntegerField(default=0, help_text="on disk: deduplicated, compressed, encrypted")
    raw_bytes = models.BigIntegerField(default=0, help_text="the deduplicated data (restic stats raw-data)")
    snapshot_count = models.PositiveIntegerField(default=0)
    check_round = models.PositiveIntegerField(default=0)  # which 1/CHECK_SUBSETS of the data the next check reads
    last_check_at = models.DateTimeField(null=True, blank=True)
    last_check_ok = models.BooleanField(null=True, blank=True)
    last_check_output = models.TextField(blank=True)
    last_error = TenantErrorField(blank=True)
    # The last "test connection" (restic opening the repository from its node).
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_output = models.TextField(blank=True)

    # sftp: restic's ``sftp:`` backend over OpenSSH; the repository is ``<sftp_path>/<restic_name>``.
    sftp_host = models.CharField(max_length=253, blank=True)
    sftp_port = models.PositiveIntegerField(default=22)
    sftp_user = models.CharField(max_length=32, blank=True)
    sftp_path = models.CharField(max_length=512, blank=True)
    sftp_host_key = models.TextField(blank=True, help_text="the server's public host key: checked strictly")
    sftp_public_key = models.TextField(blank=True, help_text="the panel's key: put it in authorized_keys")
    sftp_key_encrypted = models.TextField(blank=True)  # the private key, sealed (crypto.SFTP_KEYS)
    # s3: restic's ``s3:`` backend; the repository is ``<endpoint>/<bucket>/<restic_name>``.
    s3_endpoint = models.CharField(max_length=300, blank=True)
    s3_bucket = models.CharField(max_length=63, blank=True)
    s3_region = models.CharField(max_length=40, blank=True)
    s3_access_key_id = models.CharField(max_length=128, blank=True)
    s3_secret_encrypted = models.TextField(blank=True)  # sealed (crypto.S3_SECRETS)

    # Never a sealed field: those are in no audit record.
    audit_fields = ("name", "node", "customer", "backend", "status", "sftp_host", "sftp_port", "sftp_user",
                    "sftp_path", "sftp_host_key", "s3_endpoint", "s3_bucket", "s3_region",
                    "s3_access_key_id")  # fmt: skip

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "backup repositories"
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_backup_repository_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def restic_name(self) -> str:
        return f"r{self.pk.hex}"

    @property
    def location(self) -> str:
        """Where the repository is, as restic's ``-r`` names it (no secret in it)."""
        if self.backend == Backend.SFTP:
            host = f"[{self.sftp_host}]" if ":" in self.sftp_host else self.sftp_host
            return f"sftp://{self.sftp_user}@{host}:{self.sftp_port}/{self.sftp_path}/{self.restic_name}"
        if self.backend == Backend.S3:
            return f"s3:{self.s3_endpoint}/{self.s3_bucket}/{self.restic_name}"
        return f"backups/repos/{self.restic_name}"


class RunStatus(models.TextChoices):
    NEVER = "", "Never"
    OK = "ok", "Succeeded"
    FAILED = "failed", "Failed"
    PASSED = "passed", "Passed"


class BackupPolicy(TenantOwnedModel):
    """What (``resources``: ``"<kind>:<id>"``), when (``schedule``, a cron expression), retention
    (``keep_*`` through ``restic forget --prune``), where (``repository``), and how often the
    restore drill proves it (``drill_interval_days``)."""

    name = models.CharField(max_length=80)
    repository = models.ForeignKey(BackupRepository, on_delete=models.PROTECT, related_name="policies")
    resources = models.JSONField(default=list, blank=True)
    # A whole customer's hosting account (its websites, databases, mailboxes and their zones, as
    # they are at each run), backed up as one snapshot set per run; ``resources`` add to it.
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    schedule = models.CharField(max_length=100, default="0 3 * * *")
    enabled = models.BooleanField(default=True)
    keep_last = models.PositiveIntegerField(default=7)
    keep_daily = models.PositiveIntegerField(default=0)
    keep_weekly = models.PositiveIntegerField(default=0)
    keep_monthly = models.PositiveIntegerField(default=0)
    drill_interval_days = models.PositiveIntegerField(default=7)
    # Deleting a resource of the policy first takes a final snapshot, kept this many days (0: none).
    final_keep_days = models.PositiveIntegerField(default=30)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_run_status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.NEVER, blank=True)
    last_run_error = TenantErrorField(blank=True)
    last_drill_at = models.DateTimeField(null=True, blank=True)
    last_drill_status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.NEVER, blank=True)
    last_drill_summary = models.TextField(blank=True)

    audit_fields = ("name", "repository", "resources", "customer", "schedule", "enabled", "keep_last", "keep_daily",
                    "keep_weekly", "keep_monthly", "drill_interval_days", "final_keep_days")  # fmt: skip

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "backup policies"
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_backup_policy_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def keep(self) -> dict:
        return {"last": self.keep_last, "daily": self.keep_daily, "weekly": self.keep_weekly,
                "monthly": self.keep_monthly}  # fmt: skip


class Reason(models.TextChoices):
    MANUAL = "manual", "On demand"
    SCHEDULED = "scheduled", "Scheduled"
    PRE_RESTORE = "pre-restore", "Before a restore"
    FINAL = "final", "Before deletion"


class SnapshotStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # the backup job has not finished
    DONE = "done", "Done"
    ERROR = "error", "Failed"  # no snapshot was written (``last_error``)
    FORGOTTEN = "forgotten", "Forgotten"  # removed from the repository (retention or by hand)


class Snapshot(TenantOwnedModel):
    repository = models.ForeignKey(BackupRepository, on_delete=models.PROTECT, related_name="snapshots", db_index=False)
    policy = models.ForeignKey(BackupPolicy, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    resource_kind = models.CharField(max_length=12, choices=ResourceKind.choices)
    resource_id = models.UUIDField()
    resource_label = models.CharField(max_length=253)
    reason = models.CharField(max_length=12, choices=Reason.choices, default=Reason.MANUAL)
    status = models.CharField(max_length=12, choices=SnapshotStatus.choices, default=SnapshotStatus.PENDING)
    restic_id = models.CharField(max_length=64, blank=True)
    taken_at = models.DateTimeField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    added_bytes = models.BigIntegerField(null=True, blank=True)
    files = models.PositiveIntegerField(null=True, blank=True)
    manifest = models.JSONField(default=dict, blank=True)  # a database's rows per table, for the drill
    # The snapshot set of one run of a customer policy (the account backup): tagged ``set-<id>`` in restic.
    set_id = models.UUIDField(null=True, blank=True, db_index=True)
    keep_until = models.DateTimeField(null=True, blank=True)  # a final snapshot's end
    last_error = TenantErrorField(blank=True)

    audit_fields = ("repository", "policy", "resource_kind", "resource_id", "reason", "status", "restic_id")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "resource_id", "-created_at"], name="snapshot_resource"),
            models.Index(fields=["repository", "status"], name="snapshot_repository"),
        ]

    def __str__(self) -> str:
        return f"{self.resource_label} {self.restic_id[:8] or self.status}"

    @property
    def restic_host(self) -> str:
        return f"res-{self.resource_kind}-{self.resource_id.hex}"


class TaskStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    ERROR = "error", "Failed"


class Restore(TenantOwnedModel):
    """Putting a snapshot back: into the resource it was taken of (``in_place``: a pre-restore
    snapshot first, the resource locked for the time) or into another resource of the tenant of
    the same kind. ``step`` is the progress."""

    snapshot = models.ForeignKey(Snapshot, on_delete=models.PROTECT, related_name="restores")
    target_kind = models.CharField(max_length=12, choices=ResourceKind.choices)
    target_id = models.UUIDField()
    target_label = models.CharField(max_length=253)
    in_place = models.BooleanField(default=True)
    status = models.CharField(max_length=12, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    step = models.CharField(max_length=80, blank=True)
    # The last percentage stored (100 when done); a running restore's live one is in the cache
    # (``services.restore_progress``): its row is locked by its job until the end.
    progress = models.PositiveSmallIntegerField(null=True, blank=True)
    pre_snapshot = models.ForeignKey(Snapshot, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    finished_at = models.DateTimeField(null=True, blank=True)
    last_error = TenantErrorField(blank=True)

    audit_fields = ("snapshot", "target_kind", "target_id", "in_place", "status")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return f"restore of {self.snapshot} into {self.target_label}"


class DrillStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"


class Drill(TenantOwnedModel):
    """A restore drill of one policy: each resource's latest snapshot restored into scratch and
    compared with the snapshot (``results``: one entry per resource)."""

    policy = models.ForeignKey(BackupPolicy, on_delete=models.CASCADE, related_name="drills")
    status = models.CharField(max_length=12, choices=DrillStatus.choices, default=DrillStatus.RUNNING)
    results = models.JSONField(default=list, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    audit_fields = ("policy", "status")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return f"drill of {self.policy} ({self.status})"
