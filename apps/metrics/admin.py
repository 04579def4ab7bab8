"""The operator's view of metrics: read-only (samples and rollups are machine data, never edited)."""

from datetime import UTC, datetime

from django.contrib import admin

from apps.common.admin import ReadOnlyAdmin

from .models import HourRollup, MinuteRollup, NodeReport, Sample


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


class _SeriesAdmin(ReadOnlyAdmin):
    list_select_related = ["node"]
    search_fields = ["metric", "node__hostname"]
    list_filter = ["node__tenant"]
    show_full_result_count = False  # a count(*) over millions of rows on every page

    @admin.display(description="time (UTC)", ordering="ts")
    def when(self, obj) -> str:
        return _when(obj.ts)

    @admin.display(description="tenant")
    def tenant(self, obj):
        return obj.node.tenant_id


@admin.register(Sample)
class SampleAdmin(_SeriesAdmin):
    list_display = ["node", "metric", "when", "value", "tenant"]


@admin.register(MinuteRollup)
class MinuteRollupAdmin(_SeriesAdmin):
    list_display = ["node", "metric", "when", "value_avg", "value_min", "value_max", "samples"]


@admin.register(HourRollup)
class HourRollupAdmin(_SeriesAdmin):
    list_display = ["node", "metric", "when", "value_avg", "value_min", "value_max", "samples"]


@admin.register(NodeReport)
class NodeReportAdmin(ReadOnlyAdmin):
    list_display = ["node", "reported_at", "samples_total"]
    list_filter = ["node__tenant"]
    list_select_related = ["node"]
    search_fields = ["node__hostname"]
