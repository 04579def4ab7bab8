import re
from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer

from .models import ROLE_CHOICES, SETTABLE_STATUSES, Node, Transport

ADDRESS_RE = re.compile(r"^(https?://)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}/?$")


@extend_schema_field(
    {
        "oneOf": [
            {"type": "number", "minimum": 0, "maximum": 99999.99},
            {"type": "string", "format": "decimal", "pattern": r"^-?\d{0,5}(?:\.\d{0,2})?$"},
        ],
        "description": "vCPUs, up to two decimals: sent as a number or a decimal string, answered as a number",
    }
)
class VcpuField(serializers.DecimalField):
    """Validated as a decimal (exact sums of allocations), shown as a JSON number."""

    json_types = (int, float, str, Decimal)  # as documented above; a strict DecimalField refuses floats

    def to_representation(self, value):
        return float(value)


class CapacitySerializer(Serializer):
    vcpu = VcpuField(max_digits=7, decimal_places=2, min_value=Decimal("0.01"))
    memory_mb = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    disk_gb = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    max_pods = serializers.IntegerField(min_value=0, max_value=100000)


class NodeSerializer(ModelSerializer):
    transport = serializers.ChoiceField(choices=Transport.choices, default=Transport.LOCAL)
    roles = serializers.ListField(child=serializers.ChoiceField(choices=ROLE_CHOICES), allow_empty=True, max_length=5)
    status = serializers.ChoiceField(choices=SETTABLE_STATUSES, required=False)
    capacity = CapacitySerializer(source="*")
    allocated = serializers.SerializerMethodField()
    free = serializers.SerializerMethodField()

    class Meta:
        model = Node
        fields = [
            "id",
            "hostname",
            "address",
            "transport",
            "roles",
            "status",
            "capacity",
            "allocated",
            "free",
            "last_heartbeat_at",
            "reported",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "allocated", "free", "last_heartbeat_at", "reported", "last_error", "created_at"]

    def validate_roles(self, value):
        return sorted(set(value), key=ROLE_CHOICES.index)

    def validate_address(self, value: str) -> str:
        value = value.strip()
        if value and not ADDRESS_RE.match(value):
            raise serializers.ValidationError("Use http(s)://host:port (or host:port) of the node's agent.")
        return value

    def validate_hostname(self, value: str) -> str:
        value = value.strip().lower()
        if not value:
            raise serializers.ValidationError("This field may not be blank.")
        return value

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        # CapacitySerializer(source="*") spreads its fields; keep them together for the service.
        capacity = {k: value.pop(k) for k in ("vcpu", "memory_mb", "disk_gb", "max_pods") if k in value}
        if capacity:
            value["capacity"] = capacity
        return value

    def get_allocated(self, node) -> dict:
        return {
            "vcpu": float(node.allocated_vcpu),
            "memory_mb": node.allocated_memory_mb,
            "disk_gb": node.allocated_disk_gb,
            "pods": node.allocated_pods,
        }

    def get_free(self, node) -> dict:
        return {
            "vcpu": float(node.free_vcpu),
            "memory_mb": node.free_memory_mb,
            "disk_gb": node.free_disk_gb,
            "pods": node.free_pods,
        }


class NodeCreatedSerializer(NodeSerializer):
    secret = serializers.SerializerMethodField()

    class Meta(NodeSerializer.Meta):
        fields = [*NodeSerializer.Meta.fields, "secret"]

    def get_secret(self, node) -> str | None:
        return self.context.get("secret")
