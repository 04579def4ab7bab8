"""Input and output shapes of /api/v1/hosting/domains (apps/domains/api.py)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer
from apps.customers.models import Customer

from . import registrars
from .models import Domain


class JobRefSerializer(Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    status = serializers.CharField()
    result = serializers.JSONField()


class DomainSerializer(ModelSerializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects, required=False, allow_null=True)
    unicode_name = serializers.CharField(read_only=True)
    verification = serializers.SerializerMethodField()
    job = serializers.SerializerMethodField()

    class Meta:
        model = Domain
        fields = ["id", "name", "unicode_name", "customer", "status", "registrar", "registered_at", "expires_at",
                  "auto_renew", "nameservers", "renewal_price", "verified_at", "verification", "registrar_state",
                  "pending_nameservers", "last_error", "job", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["status", "verified_at", "registrar_state", "pending_nameservers", "last_error",
                            "created_at", "updated_at"]  # fmt: skip

    def get_verification(self, domain) -> dict:
        """The TXT record that proves ownership."""
        return {"name": domain.challenge_name, "type": "TXT", "content": domain.challenge_value}

    @extend_schema_field(JobRefSerializer(allow_null=True))
    def get_job(self, domain) -> dict | None:
        """The registrar job this request stored (also at /api/v1/ops/provisioning); null on reads."""
        job = getattr(domain, "job", None)
        return JobRefSerializer(job).data if job is not None else None


class DomainCreateSerializer(DomainSerializer):
    name = serializers.CharField(max_length=253)
    registrar = serializers.CharField(max_length=32, required=False, default="manual")
    years = serializers.IntegerField(min_value=1, max_value=10, required=False, default=1)
    nameservers = serializers.ListField(child=serializers.CharField(max_length=253), required=False, max_length=13)

    class Meta(DomainSerializer.Meta):
        fields = [*DomainSerializer.Meta.fields, "years"]

    def validate_registrar(self, value):
        if value not in registrars.names():
            raise serializers.ValidationError(f"Choose one of {', '.join(registrars.names())}.")
        return value


class DomainUpdateSerializer(Serializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects, required=False, allow_null=True)
    auto_renew = serializers.BooleanField(required=False)
    renewal_price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False,
                                             allow_null=True)  # fmt: skip
    expires_at = serializers.DateField(required=False, allow_null=True)
    nameservers = serializers.ListField(child=serializers.CharField(max_length=253), required=False, max_length=13)


class RenewSerializer(Serializer):
    years = serializers.IntegerField(min_value=1, max_value=10, default=1)
