import re

from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer

from .models import CloudPod
from .selectors import pod_runtime

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _name(value: str) -> str:
    value = value.strip().lower()
    if not NAME_RE.match(value):
        raise serializers.ValidationError("Use 1-63 lower-case letters, digits and hyphens (a hostname label).")
    return value


class RuntimeSerializer(Serializer):
    state = serializers.CharField()
    memory_limit_bytes = serializers.IntegerField(allow_null=True)
    memory_usage_bytes = serializers.IntegerField(allow_null=True)
    cpu_seconds = serializers.FloatField(allow_null=True)
    pids = serializers.IntegerField(allow_null=True)


class CloudPodSerializer(ModelSerializer):
    node = serializers.UUIDField(source="node_id", read_only=True)
    node_hostname = serializers.CharField(source="node.hostname", read_only=True)
    vcpu = serializers.FloatField(read_only=True)

    class Meta:
        model = CloudPod
        fields = [
            "id",
            "name",
            "plan",
            "image",
            "status",
            "node",
            "node_hostname",
            "vcpu",
            "memory_mb",
            "disk_gb",
            "pids",
            "subscription",
            "container_id",
            "last_error",
            "created_at",
            "updated_at",
            "deleted_at",
        ]
        read_only_fields = fields


class CloudPodDetailSerializer(CloudPodSerializer):
    runtime = serializers.SerializerMethodField()

    class Meta(CloudPodSerializer.Meta):
        fields = [*CloudPodSerializer.Meta.fields, "runtime"]
        read_only_fields = fields

    def get_runtime(self, pod) -> RuntimeSerializer:
        return pod_runtime(pod)


class CloudPodCreateSerializer(Serializer):
    name = serializers.CharField(max_length=63)
    plan = serializers.CharField(max_length=64)
    image = serializers.CharField(max_length=64, required=False)
    subscription = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)

    def validate_name(self, value):
        return _name(value)


class CloudPodUpdateSerializer(Serializer):
    name = serializers.CharField(max_length=63, required=False)
    subscription = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)

    def validate_name(self, value):
        return _name(value)


class ResizeSerializer(Serializer):
    plan = serializers.CharField(max_length=64)


class QuotaSerializer(Serializer):
    max_pods = serializers.IntegerField(allow_null=True, help_text="null: no limit")
    max_memory_mb = serializers.IntegerField(allow_null=True, help_text="null: no limit")
    overridden = serializers.BooleanField(help_text="an operator set this tenant's own limits")
    used_pods = serializers.IntegerField()
    used_memory_mb = serializers.IntegerField()


class PlanSerializer(Serializer):
    name = serializers.CharField()
    vcpu = serializers.FloatField()
    memory_mb = serializers.IntegerField()
    disk_gb = serializers.IntegerField()
    pids = serializers.IntegerField()
    billing_product = serializers.CharField(allow_null=True)
