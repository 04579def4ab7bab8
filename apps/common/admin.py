"""Admin bases: every save and delete through the admin writes an audit event."""

from django.contrib import admin

from apps.audit import services as audit

from .models import IdempotencyRecord


class AuditedModelAdmin(admin.ModelAdmin):
    audit_fields: list[str] | None = None

    def save_model(self, request, obj, form, change):
        before = None
        if change and obj.pk:
            old = type(obj)._base_manager.filter(pk=obj.pk).first()
            before = audit.snapshot(old, self.audit_fields) if old else None
        super().save_model(request, obj, form, change)
        action = "update" if change else "create"
        audit.record(
            action=f"{obj._meta.model_name}.{action}",
            obj=obj,
            actor=request.user,
            before=before,
            after=audit.snapshot(obj, self.audit_fields),
        )

    def delete_model(self, request, obj):
        audit.record(
            action=f"{obj._meta.model_name}.delete",
            obj=obj,
            actor=request.user,
            before=audit.snapshot(obj, self.audit_fields),
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            audit.record(
                action=f"{obj._meta.model_name}.delete",
                obj=obj,
                actor=request.user,
                before=audit.snapshot(obj, self.audit_fields),
            )
        super().delete_queryset(request, queryset)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History that must not change by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TenantOwnedAdmin(AuditedModelAdmin):
    """Shows and filters by tenant; the tenant is chosen once at creation."""

    def get_list_display(self, request):
        fields = list(super().get_list_display(request))
        return fields if "tenant" in fields else [*fields, "tenant"]

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        return filters if "tenant" in filters else [*filters, "tenant"]

    def get_list_select_related(self, request):
        related = self.list_select_related
        if related is True:
            return True
        return [*(related or []), "tenant"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "tenant"] if obj is not None else fields


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ["key", "user", "tenant_key", "state", "status_code", "created_at"]
    list_filter = ["state"]
    search_fields = ["key", "user__email"]
    list_select_related = ["user"]
