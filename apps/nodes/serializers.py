from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agent import tls
from apps.common.serializers import ModelSerializer, Serializer

from .models import ROLE_CHOICES, SETTABLE_STATUSES, Node, Transport
from .services import MAX_GRACE


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^(sha256:)?([0-9a-fA-F]{64}|([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2})$",
        "description": "SHA-256 of the agent certificate's public key, as `python -m agent fingerprint` prints it "
        "(sha256:<64 hex>); answered as sha256:<64 hex>",
    }
)
class FingerprintField(serializers.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 128)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def run_validation(self, data=serializers.empty):
        # Answered as null when there is no pin, so null is taken back as "no pin" too.
        return super().run_validation("" if data is None else data)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not value:
            return ""
        try:
            return tls.normalize_fingerprint(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def to_representation(self, value):
        return tls.shown(value) or None


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
    roles = serializers.ListField(child=serializers.ChoiceField(choices=ROLE_CHOICES), allow_empty=True, max_length=6)
    status = serializers.ChoiceField(choices=SETTABLE_STATUSES, required=False)
    capacity = CapacitySerializer(source="*")
    tls_fingerprint = FingerprintField(required=False, allow_blank=True)
    tls_fingerprint_next = FingerprintField(read_only=True)
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
            "tls_fingerprint",
            "tls_fingerprint_next",
            "secret_previous_until",
            "allocated",
            "free",
            "last_heartbeat_at",
            "reported",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "allocated", "free", "last_heartbeat_at", "reported", "last_error", "created_at",
                            "tls_fingerprint_next", "secret_previous_until"]  # fmt: skip

    def validate_roles(self, value):
        return sorted(set(value), key=ROLE_CHOICES.index)

    def validate_address(self, value: str) -> str:
        value = value.strip()
        try:  # the model's rule (Node.clean), early for a field error before anything else
            return tls.parse_address(value).url if value else value
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

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


class RotateSecretSerializer(Serializer):
    grace_seconds = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_GRACE,
        help_text="how long the current secret stays valid beside the new one (default MPANEL_AGENT_SECRET_GRACE; "
        "0 ends it now)",
    )


class RotatedSecretSerializer(Serializer):
    id = serializers.UUIDField()
    secret = serializers.CharField(help_text="the node's new secret, shown this once")
    secret_previous_until = serializers.DateTimeField(
        allow_null=True, help_text="until when the previous secret is still accepted"
    )


class RotateCertificateSerializer(Serializer):
    tls_fingerprint = FingerprintField(help_text="the pin `python -m agent rotate-cert` printed on the node")
