from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from . import services
from .filters import NodeFilter
from .models import Node
from .serializers import (
    NodeCreatedSerializer,
    NodeSerializer,
    RotateCertificateSerializer,
    RotatedSecretSerializer,
    RotateSecretSerializer,
)


class NodeViewSet(ResourceViewSet):
    """Servers (``/ops/servers`` and ``/hosting/servers``): tenant ADMIN+ manage their own; operators
    see every tenant's. ``POST`` of an ``agent`` node answers the agent's secret, this once; so does
    ``rotate-secret``. ``rotate-certificate`` pins the node's next TLS key beside the current one."""

    queryset = Node.objects.all()
    serializer_class = NodeSerializer
    # A new agent node's answer carries its secret, this once.
    output_serializers = {"create": NodeCreatedSerializer}
    destroy_answers_object = False
    filterset_class = NodeFilter
    search_fields = ["hostname", "address"]
    ordering_fields = ["hostname", "created_at", "status"]
    ordering = ["hostname"]
    operators_see_all = True
    # Operators manage every node; a new node belongs to a tenant, so creating one names it.
    operator_actions = frozenset(
        {"list", "retrieve", "update", "partial_update", "destroy", "rotate_secret", "rotate_certificate"}
    )
    input_serializers = {
        "create": NodeSerializer,
        "update": NodeSerializer,
        "rotate_secret": RotateSecretSerializer,
        "rotate_certificate": RotateCertificateSerializer,
    }
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

    def create_resource(self, data):
        node, secret = services.node_create(tenant=self.tenant, data=data, actor=self.request.user)
        self.add_answer_context(secret=secret)
        return node

    def update_resource(self, obj, data):
        return services.node_update(node=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        services.node_delete(node=obj, actor=self.request.user)

    @extend_schema(request=RotateSecretSerializer, responses={200: RotatedSecretSerializer},
                   summary="A new agent secret (shown once); the old one stays valid for the grace period")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="rotate-secret", url_name="rotate-secret")
    def rotate_secret(self, request, pk=None):
        node = self.get_object()
        grace = self.validated().get("grace_seconds")
        secret = services.node_rotate_secret(node=node, grace=grace, actor=request.user)
        node.refresh_from_db()
        out = {"id": node.pk, "secret": secret, "secret_previous_until": node.secret_previous_until}
        return self.answer(out, serializer=RotatedSecretSerializer)

    @extend_schema(request=RotateCertificateSerializer, responses={200: NodeSerializer},
                   summary="Pin the node's next TLS key beside the current one (a certificate rotation)")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="rotate-certificate", url_name="rotate-certificate")
    def rotate_certificate(self, request, pk=None):
        node = self.get_object()  # first: another tenant's node is a 404 whatever the body
        fingerprint = self.validated()["tls_fingerprint"]
        return self.answer(services.node_rotate_certificate(node=node, actor=request.user, fingerprint=fingerprint))
