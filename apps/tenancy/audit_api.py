"""A tenant's own audit trail, ``/api/v1/audit/``.

The viewset is tenancy's, not audit's: audit is the kernel's ground (every module records through it,
tenancy included), so it imports nothing of tenancy; reading a tenant's events in that tenant's scope,
with its roles, is tenancy's work. The events, their serializer and filters stay audit's."""

from apps.audit.filters import AuditEventFilter
from apps.audit.models import AuditEvent
from apps.audit.serializers import AuditEventSerializer

from .roles import Role
from .viewsets import ResourceViewSet


class AuditEventViewSet(ResourceViewSet):
    """The tenant's own audit trail (ADMIN+), newest first; read-only."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    required_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN}
