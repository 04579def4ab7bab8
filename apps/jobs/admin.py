from django.contrib import admin

from apps.common.admin import ReadOnlyAdmin, ReadOnlyInline, apply_each, confirm_first

from . import services
from .models import Job, JobAttempt


class JobAttemptInline(ReadOnlyInline):
    model = JobAttempt
    # ``error`` is what the tenant read, ``detail`` the whole failure (operators only).
    fields = readonly_fields = ["number", "started_at", "finished_at", "outcome", "error", "detail", "worker"]


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["type", "status", "tenant", "attempts", "object_type", "object_id", "created_at", "finished_at"]
    list_filter = ["status", "type", "created_at", "tenant"]
    search_fields = ["id", "type", "object_id", "idempotency_key", "last_error", "error_detail"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [JobAttemptInline]
    actions = ["retry_jobs", "cancel_jobs"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Retry the selected failed or cancelled jobs", permissions=["operate"])
    def retry_jobs(self, request, queryset):
        apply_each(self, request, queryset, lambda job: services.job_retry(job=job, actor=request.user), "Retried")

    @admin.action(description="Cancel the selected pending jobs", permissions=["operate"])
    @confirm_first
    def cancel_jobs(self, request, queryset):
        apply_each(self, request, queryset, lambda job: services.job_cancel(job=job, actor=request.user), "Cancelled")


@admin.register(JobAttempt)
class JobAttemptAdmin(ReadOnlyAdmin):
    list_display = ["job", "number", "outcome", "tenant", "started_at", "finished_at", "worker"]
    list_filter = ["outcome", "started_at", "job__tenant"]
    search_fields = ["job__id", "job__type", "worker", "error", "detail"]
    list_select_related = ["job__tenant"]
    date_hierarchy = "started_at"
    ordering = ["-started_at"]
    show_full_result_count = False

    @admin.display(description="tenant", ordering="job__tenant__name")
    def tenant(self, attempt):
        return attempt.job.tenant
