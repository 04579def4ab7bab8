from django.contrib import admin

from apps.common.admin import ReadOnlyAdmin, apply_each, confirm_first
from apps.jobs.admin_base import RecentJobsMixin
from apps.tenancy.admin_base import TenantOwnedAdmin

from . import services
from .models import CloudPod, TenantQuota


@admin.register(CloudPod)
class CloudPodAdmin(RecentJobsMixin, ReadOnlyAdmin):
    """Pods change only through their services (capacity, jobs, audit): the actions below."""

    list_display = ["name", "status", "plan", "node", "memory_mb", "subscription", "created_at", "tenant"]
    list_filter = ["status", "plan", "tenant"]
    search_fields = ["name", "id", "container_id", "subscription"]
    list_select_related = ["node", "tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["suspend_pods", "resume_pods", "delete_pods"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_change_permission(self, request, obj=None):
        return False  # the actions are the way to change a pod

    def _each(self, request, queryset, fn, verb):
        apply_each(self, request, queryset, lambda obj: fn(pod=obj, actor=request.user), verb, "pod(s)")

    @admin.action(description="Suspend the selected running pods", permissions=["operate"])
    def suspend_pods(self, request, queryset):
        self._each(request, queryset, services.pod_suspend, "Suspending")

    @admin.action(description="Resume the selected suspended pods", permissions=["operate"])
    def resume_pods(self, request, queryset):
        self._each(request, queryset, services.pod_resume, "Resuming")

    @admin.action(description="Delete the selected pods (a job removes each container)", permissions=["operate"])
    @confirm_first
    def delete_pods(self, request, queryset):
        self._each(request, queryset, services.pod_delete, "Deleting")


@admin.register(TenantQuota)
class TenantQuotaAdmin(TenantOwnedAdmin):
    """Operators raise or lower one tenant's pod limits; tenants only read them (GET /cloudpods/quota)."""

    list_display = ["tenant", "max_pods", "max_memory_mb", "note", "updated_at"]
    search_fields = ["tenant__name", "tenant__slug", "note"]
