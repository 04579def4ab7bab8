from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantModelViewSet

from . import services
from .models import Node, with_role
from .serializers import (
    NodeCreatedSerializer,
    NodeSerializer,
    RotateCertificateSerializer,
    RotatedSecretSerializer,
    RotateSecretSerializer,
)


class NodeFilter(filters.FilterSet):
    role = filters.CharFilter(method="filter_role")

    class Meta:
        model = Node
        fields = ["status", "transport"]

    def filter_role(self, queryset, name, value):
        return queryset.filter(with_role(value))


class NodeViewSet(TenantModelViewSet):
    """Servers (``/ops/servers`` and ``/hosting/servers``): tenant ADMIN+ manage their own; operators
    see every tenant's. ``POST`` of an ``agent`` node answers the agent's secret, this once; so does
    ``rotate-secret``. ``rotate-certificate`` pins the node's next TLS key beside the current one."""

    queryset = Node.objects.all()
    serializer_class = NodeSerializer
    filterset_class = NodeFilter
    search_fields = ["hostname", "address"]
    ordering_fields = ["hostname", "created_at", "status"]
    ordering = ["hostname"]
    operators_see_all = True
    # Operators manage every node; a new node belongs to a tenant, so creating one names it.
    operator_actions = frozenset(
        {"list", "retrieve", "update", "partial_update", "destroy", "rotate_secret", "rotate_certificate"}
    )
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]
    required_roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
        "rotate_secret": Role.ADMIN,
        "rotate_certificate": Role.ADMIN,
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

    @extend_schema(request=RotateSecretSerializer, responses={200: RotatedSecretSerializer},
                   summary="A new agent secret (shown once); the old one stays valid for the grace period")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="rotate-secret", url_name="rotate-secret")
    def rotate_secret(self, request, pk=None):
        node = self.get_object()
        serializer = RotateSecretSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        secret = services.node_rotate_secret(node=node, grace=serializer.validated_data.get("grace_seconds"),
                                             actor=request.user)  # fmt: skip
        node.refresh_from_db()
        out = {"id": node.pk, "secret": secret, "secret_previous_until": node.secret_previous_until}
        return Response(RotatedSecretSerializer(out).data)

    @extend_schema(request=RotateCertificateSerializer, responses={200: NodeSerializer},
                   summary="Pin the node's next TLS key beside the current one (a certificate rotation)")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="rotate-certificate", url_name="rotate-certificate")
    def rotate_certificate(self, request, pk=None):
        node = self.get_object()  # first: another tenant's node is a 404 whatever the body
        serializer = RotateCertificateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        node = services.node_rotate_certificate(node=node, actor=request.user,
                                                fingerprint=serializer.validated_data["tls_fingerprint"])  # fmt: skip
        return Response(NodeSerializer(node, context=self.get_serializer_context()).data)
