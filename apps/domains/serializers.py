"""Input and output shapes of /api/v1/hosting/domains (apps/domains/api.py)."""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer
from apps.customers.models import Customer

from . import registrars
from .models import Domain, DomainSettings


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


class DomainSettingsSerializer(ModelSerializer):
    """The tenant's domain settings; the EPP password and client key are never answered, only
    whether they are set."""

    epp_password_set = serializers.SerializerMethodField()
    epp_client_key_set = serializers.SerializerMethodField()
    platform_nameservers = serializers.SerializerMethodField()
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)  # None: never changed

    class Meta:
        model = DomainSettings
        fields = [
            "nameservers", "platform_nameservers", "registrar", "on_failed_registration", "epp_host", "epp_port",
            "epp_client_id", "epp_password_set", "epp_client_cert", "epp_client_key_set", "epp_ca_cert",
            "epp_admin_contact", "epp_tech_contact", "epp_billing_contact", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_epp_password_set(self, obj: DomainSettings) -> bool:
        return bool(obj.epp_password_encrypted)

    def get_epp_client_key_set(self, obj: DomainSettings) -> bool:
        return bool(obj.epp_client_key_encrypted)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_platform_nameservers(self, obj: DomainSettings) -> list[str]:
        """What an empty ``nameservers`` means: the platform's (MPANEL_DNS_NAMESERVERS)."""
        return list(settings.MPANEL_DNS_NAMESERVERS)


class DomainSettingsInputSerializer(Serializer):
    """Every field optional: those left out keep their value. ``epp_password`` and ``epp_client_key``
    are write-only (stored encrypted; an empty string clears them). The rules (two nameservers or
    none, a known registrar, PEM text) are the service's, a 400 naming the field."""

    nameservers = serializers.ListField(child=serializers.CharField(max_length=253), max_length=13, required=False)
    registrar = serializers.CharField(max_length=32, required=False)
    on_failed_registration = serializers.CharField(max_length=8, required=False)
    epp_host = serializers.CharField(max_length=253, required=False, allow_blank=True)
    epp_port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
    epp_client_id = serializers.CharField(max_length=16, required=False, allow_blank=True)
    epp_password = serializers.CharField(max_length=200, required=False, allow_blank=True, write_only=True)
    epp_client_cert = serializers.CharField(max_length=20000, required=False, allow_blank=True)
    epp_client_key = serializers.CharField(max_length=20000, required=False, allow_blank=True, write_only=True)
    epp_ca_cert = serializers.CharField(max_length=20000, required=False, allow_blank=True)
    epp_admin_contact = serializers.CharField(max_length=16, required=False, allow_blank=True)
    epp_tech_contact = serializers.CharField(max_length=16, required=False, allow_blank=True)
    epp_billing_contact = serializers.CharField(max_length=16, required=False, allow_blank=True)
