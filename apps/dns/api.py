"""/api/v1/hosting/dns: zones, their records (nested), import and export of master files.

Roles (docs/api.md, "Who calls it"): reads MEMBER+, changes ADMIN+ (infrastructure).
"""

from django.db.models import Count
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantModelViewSet

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


class ZoneViewSet(TenantModelViewSet):
    """Zones. Changes answer at once; a ``dns.zone.sync`` job pushes the zone to the node's PowerDNS."""

    queryset = Zone.objects.select_related("node")
    serializer_class = ZoneSerializer
    filterset_class = ZoneFilter
    search_fields = ["name"]
    ordering_fields = ["name", "created_at", "status"]
    ordering = ["name"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    required_roles = {**READ, **WRITE, "export": Role.MEMBER, "import_file": Role.ADMIN}

    def scope_queryset(self, queryset):
        return queryset.annotate(n_records=Count("records"))

    def get_serializer_class(self):
        return {
            "create": ZoneCreateSerializer,
            "update": ZoneUpdateSerializer,
            "partial_update": ZoneUpdateSerializer,
            "import_file": ImportSerializer,
            "export": ExportSerializer,
        }.get(self.action, ZoneSerializer)

    def _answer(self, zone, code=status.HTTP_200_OK):
        zone = Zone.objects.select_related("node").get(pk=zone.pk)
        return Response(ZoneSerializer(zone).data, status=code)

    @extend_schema(request=ZoneCreateSerializer, responses={201: ZoneSerializer})
    def create(self, request):
        serializer = ZoneCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        zone = services.zone_create(tenant=self.tenant, actor=request.user, **serializer.validated_data)
        return self._answer(zone, status.HTTP_201_CREATED)

    @extend_schema(request=ZoneUpdateSerializer, responses={200: ZoneSerializer})
    def update(self, request, pk=None, partial=False):
        zone = self.get_object()
        serializer = ZoneUpdateSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return self._answer(services.zone_update(zone=zone, data=serializer.validated_data, actor=request.user))

    @extend_schema(request=ZoneUpdateSerializer, responses={200: ZoneSerializer})
    def partial_update(self, request, pk=None):
        return self.update(request, pk, partial=True)

    @extend_schema(request=None, responses={202: ZoneSerializer}, summary="Withdraw the zone (a job removes it)")
    def destroy(self, request, pk=None):
        zone = services.zone_delete(zone=self.get_object(), actor=request.user)
        return Response(ZoneSerializer(zone).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=ImportSerializer, responses={200: ZoneSerializer}, summary="Import an RFC 1035 file")
    @action(detail=True, methods=["post"], url_path="import", url_name="import")
    def import_file(self, request, pk=None):
        zone = self.get_object()
        serializer = ImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._answer(services.zone_import(zone=zone, actor=request.user, **serializer.validated_data))

    @extend_schema(responses={200: ExportSerializer}, summary="The zone as an RFC 1035 master file")
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        return Response({"zone_file": services.zone_export(self.get_object())})


class RecordFilter(filters.FilterSet):
    class Meta:
        model = Record
        fields = ["name", "type"]


class RecordViewSet(TenantModelViewSet):
    """Records of one zone (``/hosting/dns/{zone_id}/records``). Every change re-checks the whole zone."""

    queryset = Record.objects.all()
    serializer_class = RecordSerializer
    filterset_class = RecordFilter
    search_fields = ["name", "content"]
    ordering_fields = ["name", "type", "created_at"]
    ordering = ["name", "type", "content"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    required_roles = {**READ, **WRITE}

    def zone(self) -> Zone:
        if not hasattr(self, "_zone"):
            self._zone = get_object_or_404(Zone.objects.all(), pk=self.kwargs["zone_pk"])
        return self._zone

    def scope_queryset(self, queryset):
        return queryset.filter(zone=self.zone())

    def perform_create(self, serializer):
        serializer.instance = services.record_create(zone=self.zone(), actor=self.request.user,
                                                     **serializer.validated_data)  # fmt: skip

    def perform_update(self, serializer):
        serializer.instance = services.record_update(record=serializer.instance, data=serializer.validated_data,
                                                     actor=self.request.user)  # fmt: skip

    def perform_destroy(self, instance):
        services.record_delete(record=instance, actor=self.request.user)
