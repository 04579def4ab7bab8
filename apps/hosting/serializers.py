from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer

from . import services
from .models import HostingAccount, Todo


class UsageRowSerializer(Serializer):
    used = serializers.IntegerField()
    limit = serializers.IntegerField(allow_null=True, help_text="null: unlimited")


class UsageSerializer(Serializer):
    websites = UsageRowSerializer()
    mailboxes = UsageRowSerializer()
    databases = UsageRowSerializer()
    pods = UsageRowSerializer(help_text="pods sold under the customer's subscriptions")
    disk_quota_mb = UsageRowSerializer(help_text="used: MB measured on the node (du) at disk_measured_at")
    bandwidth_gb = UsageRowSerializer(
        help_text="used: GB (1024³ bytes, rounded up) served by the customer's websites in the current period"
    )


class HostingAccountSerializer(ModelSerializer):
    customer = serializers.UUIDField(source="customer_id", read_only=True)
    subscription = serializers.UUIDField(source="subscription_id", read_only=True)
    plan = serializers.CharField(source="subscription.product.name", read_only=True)
    node = serializers.UUIDField(source="node_id", read_only=True, allow_null=True)
    website = serializers.UUIDField(source="website_id", read_only=True, allow_null=True)
    mail_domain = serializers.UUIDField(source="mail_domain_id", read_only=True, allow_null=True)
    limits = serializers.DictField(read_only=True, help_text="plan + add-ons + overrides; null values: unlimited")
    limit_overrides = serializers.DictField(read_only=True)
    usage = serializers.SerializerMethodField()

    class Meta:
        model = HostingAccount
        fields = [
            "id", "customer", "subscription", "plan", "status", "domain", "node", "system_user", "website",
            "mail_domain", "limits", "limit_overrides", "usage", "disk_used_mb", "disk_peak_mb", "disk_measured_at",
            "over_quota_since", "bandwidth_used_bytes", "bandwidth_period_start", "bandwidth_measured_at",
            "last_error", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(UsageSerializer)
    def get_usage(self, obj: HostingAccount) -> dict:
        return services.account_usage(obj)


class HostingAccountLimitsSerializer(Serializer):
    limit_overrides = serializers.DictField(
        help_text='The tenant\'s limits for this account on top of the plan, e.g. {"websites": 10, '
        '"disk_quota_mb": null}; null: unlimited; {} goes back to the plan. Refused (409) below what is in use.'
    )


class TodoSerializer(ModelSerializer):
    customer = serializers.UUIDField(source="customer_id", read_only=True, allow_null=True)
    subscription = serializers.UUIDField(source="subscription_id", read_only=True, allow_null=True)
    closed_by = serializers.EmailField(source="closed_by.email", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Todo
        fields = [
            "id", "kind", "title", "detail", "status", "customer", "subscription", "object_type", "object_id",
            "last_seen_at", "created_at", "closed_at", "closed_by", "resolution",
        ]  # fmt: skip
        read_only_fields = fields


class TodoCloseSerializer(Serializer):
    resolution = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
