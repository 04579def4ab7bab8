from django.contrib import admin

from apps.common.admin import ReadOnlyAdmin, apply_each, confirm_first
from apps.jobs.admin_base import RecentJobsMixin

from . import services
from .models import Website, WebsiteDomain


@admin.register(Website)
class WebsiteAdmin(RecentJobsMixin, ReadOnlyAdmin):
    """Websites change only through their services (validation, jobs, audit): the actions below."""

    list_display = ["primary_domain", "status", "node", "php_version", "https", "created_at", "tenant"]
    list_filter = ["status", "https", "tenant"]
    search_fields = ["primary_domain", "id", "site_id"]
    list_select_related = ["node", "tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["suspend_sites", "resume_sites", "delete_sites"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_change_permission(self, request, obj=None):
        return False

    def _each(self, request, queryset, fn, verb):
        apply_each(self, request, queryset, lambda obj: fn(website=obj, actor=request.user), verb, "website(s)")

    @admin.action(description="Suspend the selected websites (503 page)", permissions=["operate"])
    def suspend_sites(self, request, queryset):
        self._each(request, queryset, services.website_suspend, "Suspending")

    @admin.action(description="Resume the selected suspended websites", permissions=["operate"])
    def resume_sites(self, request, queryset):
        self._each(request, queryset, services.website_resume, "Resuming")

    @admin.action(description="Delete the selected websites (a job removes each vhost)", permissions=["operate"])
    @confirm_first
    def delete_sites(self, request, queryset):
        self._each(request, queryset, services.website_delete, "Deleting")


@admin.register(WebsiteDomain)
class WebsiteDomainAdmin(ReadOnlyAdmin):
    list_display = ["name", "website", "is_primary", "tenant"]
    list_filter = ["is_primary", "tenant"]
    search_fields = ["name"]
    list_select_related = ["website", "tenant"]
    show_full_result_count = False
