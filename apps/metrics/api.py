"""``/hosting/servers`` (the tenant's hosting nodes, their services and health),
``/hosting/server-metrics`` (latest figures and series for charts) and the nodes' batch ingest."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.db.models import Q
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.schema import ERROR_SCHEMA
from apps.common.serializers import ModelSerializer, Serializer
from apps.nodes.models import ROLE_CHOICES, Node
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantReadOnlyViewSet

from . import selectors, services


class ServiceSerializer(Serializer):
    name = serializers.CharField()
    role = serializers.CharField()
    state = serializers.CharField(help_text="up | down | absent | unconfigured | unknown")
    detail = serializers.CharField()


class _HealthMixin:
    def _health(self, node) -> dict:
        cache = self.context.setdefault("_health", {})
        if node.pk not in cache:
            cache[node.pk] = selectors.node_health(node)
        return cache[node.pk]

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_last_report_at(self, node):
        at = self._health(node)["last_report_at"]
        return at.isoformat() if at else None


class HostingServerSerializer(_HealthMixin, ModelSerializer):
    health = serializers.SerializerMethodField(help_text="healthy | degraded | down | unknown")
    last_report_at = serializers.SerializerMethodField()
    report_age_seconds = serializers.SerializerMethodField()
    services = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()

    class Meta:
        model = Node
        fields = ["id", "hostname", "roles", "status", "health", "last_report_at", "report_age_seconds",
                  "services", "usage", "created_at"]  # fmt: skip
        read_only_fields = fields

    def get_health(self, node) -> str:
        return self._health(node)["health"]

    def get_report_age_seconds(self, node) -> float | None:
        return self._health(node)["report_age_seconds"]

    @extend_schema_field(ServiceSerializer(many=True))
    def get_services(self, node) -> list[dict]:
        return self._health(node)["services"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_usage(self, node) -> dict:
        return self._health(node)["usage"]


class HostingServerFilter(filters.FilterSet):
    role = filters.ChoiceFilter(choices=[(r, r) for r in selectors.HOSTING_ROLES], method="filter_role")

    class Meta:
        model = Node
        fields = ["status"]

    def filter_role(self, queryset, name, value):
        return queryset.filter(selectors.has_role(value))


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


class NodeMetricsSerializer(_HealthMixin, ModelSerializer):
    node = serializers.UUIDField(source="id", read_only=True)
    last_report_at = serializers.SerializerMethodField()
    latest = serializers.SerializerMethodField(help_text="metric → [ts, value] of the last report")

    class Meta:
        model = Node
        fields = ["node", "hostname", "roles", "last_report_at", "latest"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_latest(self, node) -> dict:
        report = selectors._report_of(node)
        return report.latest if report else {}


class SeriesSerializer(Serializer):
    metric = serializers.CharField()
    points = serializers.ListField(child=serializers.ListField(), help_text="[ts, avg, min, max] per bucket")


# "from" is a Python keyword: the answer's serializer (for the schema) is built from a dict.
SeriesAnswerSerializer = type(
    "SeriesAnswerSerializer",
    (Serializer,),
    {
        "node": serializers.UUIDField(),
        "hostname": serializers.CharField(),
        "from": serializers.IntegerField(help_text="unix seconds"),
        "to": serializers.IntegerField(help_text="unix seconds"),
        "step": serializers.CharField(help_text='"raw" or seconds per bucket'),
        "source": serializers.CharField(help_text="raw | 1m | 1h: the table read"),
        "series": SeriesSerializer(many=True),
    },
)


class ServerMetricsFilter(filters.FilterSet):
    role = filters.ChoiceFilter(choices=[(r, r) for r in ROLE_CHOICES], method="filter_role")

    class Meta:
        model = Node
        fields = ["status"]

    def filter_role(self, queryset, name, value):
        return queryset.filter(selectors.has_role(value))


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


class ShieldIngestResultSerializer(Serializer):
    received = serializers.IntegerField(help_text="Shield events in the batch")
    stored = serializers.IntegerField(help_text="events new to the panel")
    unmatched = serializers.IntegerField(help_text="events naming no website of this node (dropped)")


class IngestResultSerializer(Serializer):
    received = serializers.IntegerField(help_text="samples in the batch")
    stored = serializers.IntegerField(help_text="samples new to the panel")
    duplicates = serializers.IntegerField(help_text="samples it had already (a re-sent batch)")
    shield = ShieldIngestResultSerializer(required=False, help_text="only when the batch had `shield` events")


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
        node = services.authenticate(headers=request.headers, method="POST", path=request.path, body=body)
        batch = services.parse_batch(body)
        result = services.ingest(node=node, batch=batch, nonce=request.headers.get("X-Mpanel-Nonce"))
        return Response(result.as_dict())
