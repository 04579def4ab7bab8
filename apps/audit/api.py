from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from .filters import AuditEventFilter
from .models import AuditEvent
from .serializers import AuditEventSerializer


class AuditEventViewSet(ResourceViewSet):
    """The tenant's own audit trail (ADMIN+), newest first; read-only."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    required_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN}
