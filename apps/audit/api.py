import django_filters
from rest_framework import serializers

from apps.common.serializers import ModelSerializer
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantReadOnlyViewSet

from .models import AuditEvent


class AuditEventSerializer(ModelSerializer):
    actor = serializers.UUIDField(source="actor_id", read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "actor_email",
            "via",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "request_id",
            "ip",
        ]
        read_only_fields = fields


class AuditEventFilter(django_filters.FilterSet):
    action = django_filters.CharFilter()
    action_prefix = django_filters.CharFilter(field_name="action", lookup_expr="startswith")
    actor = django_filters.UUIDFilter(field_name="actor_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "object_type", "object_id", "request_id"]


class AuditEventViewSet(TenantReadOnlyViewSet):
    """The tenant's own audit trail (ADMIN+), newest first; read-only."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    required_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN}
