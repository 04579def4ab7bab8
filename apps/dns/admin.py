from django.contrib import admin

from apps.common.admin import ReadOnlyAdmin

from .models import Record, Zone


class RecordInline(admin.TabularInline):
    model = Record
    fields = ["name", "type", "ttl", "content"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Zone)
class ZoneAdmin(ReadOnlyAdmin):
    """Zones change through the API's services (validation, serial, the push job): read-only here."""

    list_display = ["name", "status", "serial", "served_serial", "node", "created_at", "tenant"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "id"]
    list_select_related = ["node", "tenant"]
    show_full_result_count = False
    inlines = [RecordInline]


@admin.register(Record)
class RecordAdmin(ReadOnlyAdmin):
    list_display = ["name", "type", "ttl", "content", "zone", "tenant"]
    list_filter = ["type", "tenant"]
    search_fields = ["name", "content", "zone__name"]
    list_select_related = ["zone", "tenant"]
    show_full_result_count = False
