import django_filters

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantReadOnlyViewSet

from .models import AuditEvent
from .serializers import AuditEventSerializer


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
