"""Input and output shapes of /api/v1/hosting/dns (apps/dns/api.py)."""

from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer
from apps.nodes.models import Node

from . import templates
from .models import RECORD_TYPES, Record, Zone


class ZoneSerializer(ModelSerializer):
    node = serializers.PrimaryKeyRelatedField(queryset=Node.objects, required=False)
    records_count = serializers.SerializerMethodField()

    class Meta:
        model = Zone
        fields = ["id", "name", "node", "status", "serial", "served_serial", "default_ttl", "soa_mname", "soa_rname",
                  "soa_refresh", "soa_retry", "soa_expire", "soa_minimum", "last_error", "records_count",
                  "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["status", "serial", "served_serial", "last_error", "created_at", "updated_at"]

    def get_records_count(self, zone) -> int:
        counted = getattr(zone, "n_records", None)  # the list's annotation; 0 is a count, not a miss
        return zone.records.count() if counted is None else counted


class ZoneCreateSerializer(ZoneSerializer):
    name = serializers.CharField(max_length=253)
    soa_mname = serializers.CharField(max_length=253, required=False)
    soa_rname = serializers.CharField(max_length=253, required=False)
    template = serializers.ChoiceField(choices=sorted(templates.TEMPLATES), required=False)
    template_vars = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    nameservers = serializers.ListField(child=serializers.CharField(max_length=253), required=False, min_length=1)
    zone_file = serializers.CharField(required=False, trim_whitespace=False)

    class Meta(ZoneSerializer.Meta):
        fields = [*ZoneSerializer.Meta.fields, "template", "template_vars", "nameservers", "zone_file"]


class ZoneUpdateSerializer(Serializer):
    default_ttl = serializers.IntegerField(min_value=0, max_value=2_147_483_647, required=False)
    soa_mname = serializers.CharField(max_length=253, required=False)
    soa_rname = serializers.CharField(max_length=253, required=False)
    soa_refresh = serializers.IntegerField(min_value=0, required=False)
    soa_retry = serializers.IntegerField(min_value=0, required=False)
    soa_expire = serializers.IntegerField(min_value=0, required=False)
    soa_minimum = serializers.IntegerField(min_value=0, required=False)


class ImportSerializer(Serializer):
    zone_file = serializers.CharField(trim_whitespace=False)
    replace = serializers.BooleanField(default=True)


class ExportSerializer(Serializer):
    zone_file = serializers.CharField()


class RecordSerializer(ModelSerializer):
    name = serializers.CharField(max_length=253, required=False, default="@")
    type = serializers.ChoiceField(choices=RECORD_TYPES)
    ttl = serializers.IntegerField(min_value=0, max_value=2_147_483_647, required=False, allow_null=True)
    content = serializers.CharField(max_length=65535)

    class Meta:
        model = Record
        fields = ["id", "zone", "name", "type", "ttl", "content", "created_at", "updated_at"]
        read_only_fields = ["zone", "created_at", "updated_at"]
