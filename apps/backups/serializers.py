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
from .models import BackupPolicy, BackupRepository, Drill, ResourceKind, Restore, Snapshot


class BackupRepositorySerializer(ModelSerializer):
    node = serializers.PrimaryKeyRelatedField(queryset=Node.objects, help_text="A node with the backup role.")
    name = serializers.CharField(max_length=80)

    class Meta:
        model = BackupRepository
        fields = ["id", "name", "node", "customer", "backend", "status", "size_bytes", "raw_bytes", "snapshot_count",
                  "last_check_at", "last_check_ok", "last_error", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["customer", "backend", "status", "size_bytes", "raw_bytes", "snapshot_count",
                            "last_check_at", "last_check_ok", "last_error", "created_at", "updated_at"]  # fmt: skip


class RepositoryDeleteSerializer(Serializer):
    confirm = serializers.CharField(help_text="The repository's name, repeated: every snapshot in it goes.")


class RepositoryPasswordSerializer(Serializer):
    repository = serializers.UUIDField()
    restic_repository = serializers.CharField(help_text="Where the repository is on its node (restic -r).")
    password = serializers.CharField(help_text="The restic password: keep it safe, it opens every snapshot.")


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
