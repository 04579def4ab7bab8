"""/api/v1/hosting/dns: zones, their records (nested), import and export of master files.

Roles: reads MEMBER+, changes ADMIN+ (infrastructure).
"""

from django.db.models import OuterRef
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404

from apps.common.queries import SubqueryCount
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from . import services
from .models import Record, Zone, ZoneStatus
from .serializers import (
    ExportSerializer,
    ImportSerializer,
    RecordSerializer,
    ZoneCreateSerializer,
    ZoneSerializer,
    ZoneUpdateSerializer,
)

READ = {"list": Role.MEMBER, "retrieve": Role.MEMBER}
WRITE = {"create": Role.ADMIN, "update": Role.ADMIN, "partial_update": Role.ADMIN, "destroy": Role.ADMIN}


class ZoneFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=ZoneStatus.choices)

    class Meta:
        model = Zone
        fields = ["status", "node", "name"]


@extend_schema_view(destroy=extend_schema(summary="Withdraw the zone (a job removes it)"))
class ZoneViewSet(ResourceViewSet):
    """Zones. Changes answer at once; a job then publishes the zone on the node's name server."""

    queryset = Zone.objects.select_related("node")
    serializer_class = ZoneSerializer
    input_serializers = {
        "create": ZoneCreateSerializer,
        "update": ZoneUpdateSerializer,
        "import_file": ImportSerializer,
    }
    filterset_class = ZoneFilter
    search_fields = ["name"]
    ordering_fields = ["name", "created_at", "status"]
    ordering = ["name"]
    required_roles = {**READ, **WRITE, "export": Role.MEMBER, "import_file": Role.ADMIN}

    def scope_queryset(self, queryset):
        # A scalar subquery, not Count("records"): no GROUP BY over the tenant's zones and their records.
        return queryset.annotate(n_records=SubqueryCount(Record.objects.filter(zone=OuterRef("pk"))))

    @staticmethod
    def current(zone: Zone) -> Zone:
        """The zone as it is now: where jobs run in-process (the embedded default) the push has run."""
        return Zone.objects.select_related("node").get(pk=zone.pk)

    def create_resource(self, data):
        return self.current(services.zone_create(tenant=self.tenant, actor=self.request.user, **data))

    def update_resource(self, obj, data):
        return self.current(services.zone_update(zone=obj, data=data, actor=self.request.user))

    def destroy_resource(self, obj):
        # Answered as it was left: the job that withdraws the zone may have deleted the row already.
        return services.zone_delete(zone=obj, actor=self.request.user)

    @extend_schema(request=ImportSerializer, responses={200: ZoneSerializer}, summary="Import an RFC 1035 file")
    @action(detail=True, methods=["post"], url_path="import", url_name="import")
    def import_file(self, request, pk=None):
        zone = self.get_object()
        return self.answer(self.current(services.zone_import(zone=zone, actor=request.user, **self.validated())))

    @extend_schema(responses={200: ExportSerializer}, summary="The zone as an RFC 1035 master file")
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        return self.answer({"zone_file": services.zone_export(self.get_object())}, serializer=ExportSerializer)


class RecordFilter(filters.FilterSet):
    class Meta:
        model = Record
        fields = ["name", "type"]


class RecordViewSet(ResourceViewSet):
    """Records of one zone. Every change re-checks the whole zone."""

    queryset = Record.objects.all()
    serializer_class = RecordSerializer
    input_serializers = {"create": RecordSerializer, "update": RecordSerializer}
    destroy_answers_object = False
    filterset_class = RecordFilter
    search_fields = ["name", "content"]
    ordering_fields = ["name", "type", "created_at"]
    ordering = ["name", "type", "content"]
    required_roles = {**READ, **WRITE}

    def zone(self) -> Zone:
        if not hasattr(self, "_zone"):
            self._zone = get_object_or_404(Zone.objects.all(), pk=self.kwargs["zone_pk"])
        return self._zone

    def scope_queryset(self, queryset):
        return queryset.filter(zone=self.zone())

    def create_resource(self, data):
        return services.record_create(zone=self.zone(), actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return services.record_update(record=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        services.record_delete(record=obj, actor=self.request.user)
