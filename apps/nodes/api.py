from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantModelViewSet

from . import services
from .models import Node, with_role
from .serializers import NodeCreatedSerializer, NodeSerializer


class NodeFilter(filters.FilterSet):
    role = filters.CharFilter(method="filter_role")

    class Meta:
        model = Node
        fields = ["status", "transport"]

    def filter_role(self, queryset, name, value):
        return queryset.filter(with_role(value))


class NodeViewSet(TenantModelViewSet):
    """Servers (``/ops/servers`` and ``/hosting/servers``): tenant ADMIN+ manage their own; operators
    see every tenant's. ``POST`` of an ``agent`` node answers the agent's secret, this once."""

    queryset = Node.objects.all()
    serializer_class = NodeSerializer
    filterset_class = NodeFilter
    search_fields = ["hostname", "address"]
    ordering_fields = ["hostname", "created_at", "status"]
    ordering = ["hostname"]
    operators_see_all = True
    # Operators manage every node; a new node belongs to a tenant, so creating one names it.
    operator_actions = frozenset({"list", "retrieve", "update", "partial_update", "destroy"})
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]
    required_roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    @extend_schema(responses={201: NodeCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        node, secret = services.node_create(tenant=self.tenant, data=serializer.validated_data, actor=request.user)
        out = NodeCreatedSerializer(node, context={**self.get_serializer_context(), "secret": secret})
        return Response(out.data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        serializer.instance = services.node_update(
            node=serializer.instance, data=serializer.validated_data, actor=self.request.user
        )

    def perform_destroy(self, instance):
        services.node_delete(node=instance, actor=self.request.user)
