"""``/hosting/servers`` (the tenant's hosting nodes, their services and health),
``/hosting/server-metrics`` (latest figures and series for charts) and the nodes' batch ingest."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.schema import ERROR_SCHEMA
from apps.nodes.models import Node
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantReadOnlyViewSet

from . import selectors, services
from .filters import HostingServerFilter, ServerMetricsFilter
from .serializers import (
    HostingServerSerializer,
    IngestResultSerializer,
    NodeMetricsSerializer,
    SeriesAnswerSerializer,
)


def _hosting_nodes(queryset):
    q = Q()
    for role in selectors.HOSTING_ROLES:
        q |= selectors.has_role(role)
    return queryset.filter(q)


class HostingServerViewSet(TenantReadOnlyViewSet):
    """The tenant's nodes with a hosting role (web, db, mail, dns): what services each runs, whether
    each answered at its last heartbeat or report, and its health. Read VIEWER+ (a dashboard, no
    addresses or secrets); nodes are managed at /ops/servers (ADMIN+)."""

    queryset = Node.objects.select_related("metrics_report")
    serializer_class = HostingServerSerializer
    filterset_class = HostingServerFilter
    search_fields = ["hostname"]
    ordering_fields = ["hostname", "created_at", "status"]
    ordering = ["hostname"]
    required_roles = {"list": Role.VIEWER, "retrieve": Role.VIEWER}

    def scope_queryset(self, queryset):
        return _hosting_nodes(queryset)


SERIES_PARAMETERS = [
    OpenApiParameter("metric", str, many=True, description="repeatable or comma-separated; default the node's main"),
    OpenApiParameter("from", str, description="unix seconds or ISO 8601; default to - 1 hour"),
    OpenApiParameter("to", str, description="unix seconds or ISO 8601; default now"),
    OpenApiParameter("step", str, description="raw | 1m | 1h | seconds; default 1m, or 1h for long ranges"),
]


class ServerMetricsViewSet(TenantReadOnlyViewSet):
    """Every node of the tenant with its latest figures (list), and a node's series for charts
    (retrieve with ``metric``, ``from``, ``to``, ``step``). Read VIEWER+ (dashboards)."""

    queryset = Node.objects.select_related("metrics_report")
    serializer_class = NodeMetricsSerializer
    filterset_class = ServerMetricsFilter
    search_fields = ["hostname"]
    ordering_fields = ["hostname", "created_at"]
    ordering = ["hostname"]
    required_roles = {"list": Role.VIEWER, "retrieve": Role.VIEWER}

    @extend_schema(parameters=SERIES_PARAMETERS, responses={200: SeriesAnswerSerializer})
    def retrieve(self, request, *args, **kwargs):
        node = self.get_object()
        query = selectors.parse_query(request.query_params)
        return Response(
            {
                "node": str(node.pk),
                "hostname": node.hostname,
                "from": query.start,
                "to": query.end,
                "step": "raw" if query.step is None else query.step,
                "source": query.source,
                "series": selectors.series(node, query),
            }
        )


class IngestView(APIView):
    """``POST /hosting/server-metrics/ingest``: a node's batch of samples, signed with the node's
    secret (``X-Mpanel-Node`` and the headers of agent.signing). 401 when the signature is missing,
    wrong, stale or replayed; 400 on a bad batch; nothing is stored in either case."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={
            200: IngestResultSerializer,
            401: OpenApiResponse(ERROR_SCHEMA, description="not signed by the node's secret, stale or replayed"),
            413: OpenApiResponse(ERROR_SCHEMA, description="more than the batch limit"),
        },
        auth=[],
        summary="Batch ingest of a node's metrics",
    )
    def post(self, request):
        try:
            body = request.body
        except RequestDataTooBig:
            return Response({"detail": "The batch is too large."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        result = services.receive(headers=request.headers, method="POST", path=request.path, body=body)
        return Response(result.as_dict())
