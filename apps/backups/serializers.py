"""Backup serializers: the shapes of /api/v1/enterprise/backups. No serializer has a field for the
repository password; the export answers it alone, once per call."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer
from apps.customers.models import Customer
from apps.nodes.models import Node

from . import services
from .models import Backend, BackupPolicy, BackupRepository, Drill, ResourceKind, Restore, Snapshot

REPOSITORY_STATE = ["customer", "status", "size_bytes", "raw_bytes", "snapshot_count", "last_check_at",
                    "last_check_ok", "last_test_at", "last_test_ok", "last_test_output", "last_error", "created_at",
                    "updated_at"]  # fmt: skip
SFTP_SHOWN = ["sftp_host", "sftp_port", "sftp_user", "sftp_path", "sftp_host_key"]
S3_SHOWN = ["s3_endpoint", "s3_bucket", "s3_region", "s3_access_key_id"]


class BackupRepositorySerializer(ModelSerializer):
    """A repository. Its secrets are write-only: the SFTP private key (``sftp_private_key``, else the
    panel makes one and shows its public half, ``sftp_public_key``) and the S3 secret key
    (``s3_secret_key``) are taken, sealed, and never answered."""

    node = serializers.PrimaryKeyRelatedField(
        queryset=Node.objects, help_text="A node with the backup role: it runs the repository's own jobs; an SFTP "
                                         "repository is on it unless sftp_host names another server.",
    )  # fmt: skip
    name = serializers.CharField(max_length=80)
    backend = serializers.ChoiceField(choices=Backend.choices, required=False, default=Backend.LOCAL)
    location = serializers.CharField(read_only=True, help_text="Where the repository is (restic -r).")
    sftp_host = serializers.CharField(max_length=253, required=False, allow_blank=True,
                                      help_text="sftp: the SSH server (default: the node's address).")  # fmt: skip
    sftp_port = serializers.IntegerField(min_value=1, max_value=65535, required=False, help_text="sftp: 22 unless set.")
    sftp_user = serializers.CharField(max_length=32, required=False, allow_blank=True, help_text="sftp: the SSH user.")
    sftp_path = serializers.CharField(
        max_length=512, required=False, allow_blank=True,
        help_text="sftp: the folder holding the repository (absolute, or relative to the user's home; "
                  "default mpanel-backups).",
    )  # fmt: skip
    sftp_host_key = serializers.CharField(
        max_length=4000, required=False, allow_blank=True,
        help_text="sftp: the server's public host key (ssh-keyscan's line); the node checks it strictly.",
    )  # fmt: skip
    sftp_private_key = serializers.CharField(
        max_length=8000, required=False, allow_blank=True, write_only=True, trim_whitespace=False,
        help_text="sftp: an OpenSSH private key without a passphrase (write-only). Left out: the panel makes an "
                  "Ed25519 key; put sftp_public_key in the user's authorized_keys.",
    )  # fmt: skip
    sftp_public_key = serializers.CharField(read_only=True)
    s3_endpoint = serializers.CharField(max_length=300, required=False, allow_blank=True,
                                        help_text="s3: https://host[:port] of the S3-compatible service.")  # fmt: skip
    s3_bucket = serializers.CharField(max_length=63, required=False, allow_blank=True,
                                      help_text="s3: the bucket (S3's naming rules).")  # fmt: skip
    s3_region = serializers.CharField(max_length=40, required=False, allow_blank=True,
                                      help_text="s3: default us-east-1.")  # fmt: skip
    s3_access_key_id = serializers.CharField(max_length=128, required=False, allow_blank=True)
    s3_secret_key = serializers.CharField(max_length=256, required=False, allow_blank=True, write_only=True,
                                          trim_whitespace=False, help_text="s3: write-only.")  # fmt: skip

    class Meta:
        model = BackupRepository
        fields = ["id", "name", "node", "backend", "location", *SFTP_SHOWN, "sftp_private_key", "sftp_public_key",
                  *S3_SHOWN, "s3_secret_key", *REPOSITORY_STATE]  # fmt: skip
        read_only_fields = REPOSITORY_STATE


class RepositoryUpdateSerializer(Serializer):
    """An SFTP or S3 repository's connection: only its own backend's settings; a secret left out stays."""

    sftp_host = serializers.CharField(max_length=253, required=False)
    sftp_port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
    sftp_user = serializers.CharField(max_length=32, required=False)
    sftp_path = serializers.CharField(max_length=512, required=False)
    sftp_host_key = serializers.CharField(max_length=4000, required=False)
    sftp_private_key = serializers.CharField(max_length=8000, required=False, write_only=True, trim_whitespace=False)
    s3_endpoint = serializers.CharField(max_length=300, required=False)
    s3_bucket = serializers.CharField(max_length=63, required=False)
    s3_region = serializers.CharField(max_length=40, required=False)
    s3_access_key_id = serializers.CharField(max_length=128, required=False)
    s3_secret_key = serializers.CharField(max_length=256, required=False, write_only=True, trim_whitespace=False)


class RepositoryDeleteSerializer(Serializer):
    confirm = serializers.CharField(help_text="The repository's name, repeated: every snapshot in it goes.")


class RepositoryPasswordSerializer(Serializer):
    repository = serializers.UUIDField()
    restic_repository = serializers.CharField(help_text="Where the repository is on its node (restic -r).")
    password = serializers.CharField(help_text="The restic password: keep it safe, it opens every snapshot.")
    backend = serializers.ChoiceField(choices=Backend.choices)
    environment = serializers.DictField(
        child=serializers.CharField(),
        help_text="What restic reads (RESTIC_REPOSITORY, RESTIC_PASSWORD and, for S3, the AWS_* keys).",
    )
    sftp_private_key = serializers.CharField(required=False, help_text="SFTP: the panel's SSH key (OpenSSH format).")
    sftp_known_hosts = serializers.CharField(
        required=False, help_text="SFTP: the server's host key, as a known_hosts line."
    )
    s3_access_key_id = serializers.CharField(required=False)
    s3_secret_key = serializers.CharField(required=False, help_text="S3: the secret key.")


class BackupPolicySerializer(ModelSerializer):
    repository = serializers.PrimaryKeyRelatedField(queryset=BackupRepository.objects)
    name = serializers.CharField(max_length=80)
    resources = serializers.ListField(
        child=serializers.CharField(max_length=80), max_length=500, required=False,
        help_text='What it backs up: "<kind>:<id>", kind website, database, mailbox, zone or pod.',
    )  # fmt: skip
    customer = serializers.PrimaryKeyRelatedField(
        queryset=Customer.objects, required=False, allow_null=True,
        help_text="A customer's whole hosting account (websites, databases, mailboxes, their zones) as one "
                  "snapshot set per run.",
    )  # fmt: skip
    schedule = serializers.CharField(max_length=100, required=False, help_text="cron: minute hour day month weekday")
    keep_last = serializers.IntegerField(min_value=0, max_value=10000, required=False)
    keep_daily = serializers.IntegerField(min_value=0, max_value=10000, required=False)
    keep_weekly = serializers.IntegerField(min_value=0, max_value=10000, required=False)
    keep_monthly = serializers.IntegerField(min_value=0, max_value=10000, required=False)
    drill_interval_days = serializers.IntegerField(min_value=0, max_value=365, required=False,
                                                   help_text="0: no scheduled drill")  # fmt: skip

    class Meta:
        model = BackupPolicy
        fields = ["id", "name", "repository", "resources", "customer", "schedule", "enabled", "keep_last", "keep_daily",
                  "keep_weekly", "keep_monthly", "drill_interval_days", "final_keep_days", "last_run_at",
                  "last_run_status", "last_run_error", "last_drill_at", "last_drill_status", "last_drill_summary",
                  "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["last_run_at", "last_run_status", "last_run_error", "last_drill_at", "last_drill_status",
                            "last_drill_summary", "created_at", "updated_at"]  # fmt: skip


class BackupPolicyUpdateSerializer(BackupPolicySerializer):
    class Meta(BackupPolicySerializer.Meta):
        extra_kwargs = {"name": {"required": False}, "repository": {"required": False}}


class BackupSnapshotSerializer(ModelSerializer):
    class Meta:
        model = Snapshot
        fields = ["id", "repository", "policy", "set_id", "resource_kind", "resource_id", "resource_label", "reason",
                  "status", "restic_id", "taken_at", "size_bytes", "added_bytes", "files", "keep_until", "last_error",
                  "created_at"]  # fmt: skip
        read_only_fields = fields


class BackupNowSerializer(Serializer):
    """Back up one resource now."""

    repository = serializers.PrimaryKeyRelatedField(queryset=BackupRepository.objects)
    resource_kind = serializers.ChoiceField(choices=ResourceKind.choices)
    resource_id = serializers.UUIDField()


class SnapshotQuerySerializer(Serializer):
    resource = serializers.UUIDField(required=False, help_text="Only this resource's snapshots.")


class RestoreProgressSerializer(Serializer):
    percent = serializers.FloatField(help_text="0 to 100.")
    bytes_done = serializers.IntegerField(allow_null=True, help_text="Bytes restored so far (a tree's restore).")
    bytes_total = serializers.IntegerField(allow_null=True, help_text="Bytes the snapshot restores in all.")


class BackupRestoreSerializer(ModelSerializer):
    progress = serializers.SerializerMethodField(
        help_text="How far a running restore is (updated about once a second); 100 when done, null before it starts."
    )

    class Meta:
        model = Restore
        fields = ["id", "snapshot", "target_kind", "target_id", "target_label", "in_place", "status", "step",
                  "progress", "pre_snapshot", "finished_at", "last_error", "created_at"]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(RestoreProgressSerializer(allow_null=True))
    def get_progress(self, restore) -> dict | None:
        return services.restore_progress(restore)


class RestoreInputSerializer(Serializer):
    target = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=40,
        help_text='Empty: in place. The id of another of your resources of the same kind (and engine) to restore '
                  'into, or "new": a new resource is made first by its own app (its rules and plan limits apply).',
    )  # fmt: skip
    hostname = serializers.CharField(
        required=False, allow_blank=True, max_length=253,
        help_text='With "target": "new", a website: the new site\'s hostname (default restored-<YYYYMMDD>.<original>).',
    )  # fmt: skip
    suffix = serializers.CharField(
        required=False, allow_blank=True, max_length=30,
        help_text='With "target": "new", a database: appended to the original\'s name (default _restored_<YYYYMMDD>).',
    )  # fmt: skip

    name = serializers.CharField(
        required=False, allow_blank=True, max_length=253,
        help_text='With "target": "new": a mailbox\'s new local part (same mail domain; default <local>-restored-'
                  '<YYYYMMDD>), a zone\'s new name (required), a pod\'s new name (default <name>-restored-<YYYYMMDD>).',
    )  # fmt: skip
    password = serializers.CharField(
        required=False, allow_blank=True, write_only=True, max_length=200, style={"input_type": "password"},
        help_text='With "target": "new", a mailbox: the new mailbox\'s password (default: a random one, to be set).',
    )  # fmt: skip

    def validate_target(self, value):
        if not value:
            return None
        if value == "new":
            return value
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise serializers.ValidationError('A resource id, or "new".') from None

    def validate(self, attrs):
        named = [k for k in ("hostname", "suffix", "name", "password") if attrs.get(k)]
        if attrs.get("target") != "new" and named:
            raise serializers.ValidationError({"target": f'{named[0]} goes only with "target": "new".'})
        return attrs


class DownloadQuerySerializer(Serializer):
    path = serializers.CharField(
        max_length=4096, help_text="The file's path inside the snapshot, e.g. public/index.html"
    )


class BackupDrillSerializer(ModelSerializer):
    class Meta:
        model = Drill
        fields = ["id", "policy", "status", "results", "finished_at", "created_at"]
        read_only_fields = fields


class DrillStartSerializer(Serializer):
    policy = serializers.PrimaryKeyRelatedField(queryset=BackupPolicy.objects)
