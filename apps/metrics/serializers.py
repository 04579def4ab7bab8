"""The answers of ``/hosting/servers`` and ``/hosting/server-metrics`` (and its ingest)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer
from apps.nodes.models import Node

from . import selectors


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
        report = selectors.report_of(node)
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


class ShieldIngestResultSerializer(Serializer):
    received = serializers.IntegerField(help_text="Shield events in the batch")
    stored = serializers.IntegerField(help_text="events new to the panel")
    unmatched = serializers.IntegerField(help_text="events naming no website of this node (dropped)")


class IngestResultSerializer(Serializer):
    received = serializers.IntegerField(help_text="samples in the batch")
    stored = serializers.IntegerField(help_text="samples new to the panel")
    duplicates = serializers.IntegerField(help_text="samples it had already (a re-sent batch)")
    shield = ShieldIngestResultSerializer(required=False, help_text="only when the batch had `shield` events")
