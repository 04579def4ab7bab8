from django.contrib import admin

from apps.common.admin import ReadOnlyAdmin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "action", "tenant", "actor_email", "via", "object_type", "object_repr", "ip"]
    list_filter = ["via", "action", "object_type", "created_at", "tenant"]
    search_fields = ["action", "object_id", "object_repr", "actor_email", "request_id"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False
