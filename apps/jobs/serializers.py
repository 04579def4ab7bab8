from rest_framework import serializers

from apps.common.serializers import ModelSerializer

from .models import Job, JobAttempt


class JobAttemptSerializer(ModelSerializer):
    class Meta:
        model = JobAttempt
        fields = ["number", "started_at", "finished_at", "outcome", "error", "worker"]
        read_only_fields = fields


class JobSerializer(ModelSerializer):
    tenant = serializers.UUIDField(source="tenant_id", read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "tenant",
            "type",
            "status",
            "payload",
            "result",
            "object_type",
            "object_id",
            "attempts",
            "max_attempts",
            "last_error",
            "run_after",
            "started_at",
            "finished_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    attempt_log = JobAttemptSerializer(many=True, read_only=True)

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "attempt_log"]
        read_only_fields = fields
