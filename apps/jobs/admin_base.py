"""Admin pieces other apps' admins use to show jobs."""

from django.contrib import admin

from apps.common.admin import related_rows

from .models import Job


class RecentJobsMixin:
    """An object page that lists the object's latest jobs (jobs point at objects by type and id,
    ``label_lower`` as ``job_enqueue`` stores it, so a table rather than an inline)."""

    readonly_fields = ["recent_jobs"]

    @admin.display(description="Jobs (latest first)")
    def recent_jobs(self, obj):
        return related_rows(Job, filters={"object_type": obj._meta.label_lower, "object_id": str(obj.pk)},
                            columns=[("Job", "type"), ("Status", "status"), ("Attempts", "attempts"),
                                     ("Created", "created_at"), ("Finished", "finished_at")], title="jobs")  # fmt: skip
