"""The jobs' admin, and the base of every admin whose objects a service writes (hosting objects).

``ServiceAdmin`` + ``ServiceForm``: add and change pages whose save *is* one service call
(``apps.common.admin.ServiceFormMixin``: a refusal rolls back and comes back as a form error), and
buttons on the object's page (``apps.common.admin.ObjectAction``). Each call runs in the object's
tenant scope (the services read with the tenant-scoped managers; the admin otherwise sees every
tenant) and is marked ``via="operator"`` in the audit trail (``operating``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from apps.common import context
from apps.common.admin import (
    ConsoleModelAdmin,
    ObjectAction,
    ReadOnlyAdmin,
    ReadOnlyInline,
    ServiceFormMixin,
    apply_each,
    confirm_first,
    status_column,
)
from apps.common.display import badge, when
from apps.common.exceptions import Conflict, InvalidInput
from apps.tenancy.models import Tenant
from apps.tenancy.scoping import tenant_scope

from . import services
from .admin_base import RecentJobsMixin
from .models import Job, JobAttempt, JobStatus


@contextmanager
def operating(tenant) -> Iterator[None]:
    """An operator's act on one tenant's objects from the admin: the services run in that tenant's
    scope (their placement and uniqueness reads are the tenant's, as from the API) and what they audit
    is marked ``via="operator"``."""
    ctx = context.current()
    before = ctx.via
    ctx.via = "operator"
    try:
        with tenant_scope(tenant):
            yield
    finally:
        ctx.via = before


def tenant_from(request) -> Tenant | None:
    """The tenant the add page was opened for (``?tenant=<id>``, or the posted choice): its nodes
    and subscriptions only are offered."""
    raw = request.POST.get("tenant") or request.GET.get("tenant")
    try:
        return Tenant.objects.filter(pk=raw).first() if raw else None
    except (ValueError, ValidationError):  # a malformed id: every tenant's rows are offered
        return None


class ServiceForm(forms.ModelForm):
    """The form of a ``ServiceAdmin`` page: ``act(data, actor)`` is its save, one service call.

    ``act`` answers the object the service wrote and may keep in ``self.extra`` what is shown once
    (a password); ``changed(data, names)`` gives an update service only the fields the operator
    changed; ``tenant_for(data)`` is the tenant whose scope the service runs in.
    """

    # On an add page, the field whose row gives the tenant: the tenant itself, or the parent row
    # (a record's zone, a mailbox's mail domain…).
    tenant_via = "tenant"

    def tenant_for(self, data: dict):
        if not self.instance._state.adding:
            return self.instance.tenant
        chosen = data.get(self.tenant_via)
        return chosen if self.tenant_via == "tenant" else getattr(chosen, "tenant", None)

    def changed(self, data: dict, names) -> dict:
        return {name: data[name] for name in names if name in self.changed_data and name in data}

    def act(self, data: dict, actor) -> models.Model:
        if not self.instance._state.adding and not self.changed_data:
            return self.instance  # a page with nothing editable (or nothing edited): no call, no event
        raise NotImplementedError


class ServiceAdmin(RecentJobsMixin, ServiceFormMixin, ConsoleModelAdmin):
    """An admin whose writes are services: ``add_form`` (fields ``add_fields``) on the add page,
    ``form`` (editable ``change_fields``, read-only ``shown_fields``) on the change page, and the
    buttons (``object_actions``, ``apps.common.admin.ObjectAction``) on the object's page.

    Every service call (a page's save, a button) runs in the object's tenant scope and is audited
    via="operator" (``operating``). Rows are never deleted by Django's own delete view: a "Delete"
    button calls the service (a job may have work to do on the node first). The object's latest
    jobs are listed, and ``retry_action`` retries its last failed one.
    """

    add_form: type[ServiceForm] = ServiceForm
    form: type[ServiceForm] = ServiceForm
    status = status_column(description="status")  # the list's coloured badge (list_display "status")
    add_fields: list[str] = []
    change_fields: list[str] = []
    shown_fields: list[str] = []

    def get_fields(self, request, obj=None):
        if obj is None:
            return list(self.add_fields)
        return [*self.change_fields, *self.shown_fields, "recent_jobs"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else [*self.shown_fields, "recent_jobs"]

    def get_fieldsets(self, request, obj=None):
        return [(None, {"fields": self.get_fields(request, obj)})]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def has_delete_permission(self, request, obj=None):
        return False  # the "Delete" button calls the service

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if not self.change_fields:  # nothing to edit here: its buttons are the way to change it
            extra_context = {
                **(extra_context or {}),
                "show_save": False,
                "show_save_and_continue": False,
                "show_save_and_add_another": False,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def service_save(self, request, form, formsets, change):
        form.extra = {}
        try:
            with operating(form.tenant_for(form.cleaned_data)):
                saved = form.act(form.cleaned_data, request.user)
        except ValidationError as exc:  # a model's own clean() the service ran (e.g. a node's address)
            field, errors = next(iter(exc.message_dict.items())) if hasattr(exc, "error_dict") else (None, exc.messages)
            raise InvalidInput(" ".join(errors), field=field) from exc
        request.service_extra = form.extra  # e.g. a password the service answered, for ``after_add``
        return saved

    def response_add(self, request, obj, post_url_continue=None):
        page = self.after_add(request, obj, getattr(request, "service_extra", {}))
        return page if page is not None else super().response_add(request, obj, post_url_continue)

    def after_add(self, request, obj, extra: dict):
        """A page to answer the add with instead of the usual redirect (a secret shown once)."""
        return None

    def object_action_scope(self, obj):
        return operating(obj.tenant)

    def gone_to_list(self, request, obj, message: str) -> HttpResponseRedirect:
        """The answer of a button that deleted the row: the list, with what was done."""
        self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))

    @admin.display(description="Jobs (latest first)")
    def recent_jobs(self, obj):
        jobs = Job.all_tenants.filter(object_type=obj._meta.label_lower, object_id=str(obj.pk))
        rows = list(jobs.order_by("-created_at")[:20])
        if not rows:
            return "No jobs yet."
        body = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:jobs_job_change", args=[job.pk]),
                    job.type,
                    badge(job.status, job.get_status_display()),
                    job.attempts,
                    when(job.created_at),
                    when(job.finished_at),
                    job.last_error[:200] or "—",
                )
                for job in rows
            ),
        )
        everything = reverse("admin:jobs_job_changelist") + f"?object_id={obj.pk}"
        return format_html(
            '<table class="related-rows"><thead><tr><th>Job</th><th>Status</th><th>Attempts</th><th>Created</th>'
            "<th>Finished</th><th>Last error</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">All jobs →</a></p>',
            body,
            everything,
        )

    def retry_failed_job(self, request, obj, data):
        job = (
            Job.all_tenants.filter(
                object_type=obj._meta.label_lower,
                object_id=str(obj.pk),
                status__in=[JobStatus.FAILED, JobStatus.CANCELLED],
            )
            .order_by("-created_at")
            .first()
        )
        if job is None:
            raise Conflict("There is no failed job to retry.")
        services.job_retry(job=job, actor=request.user)
        return f"Retrying {job.type}."


# The "retry" button of an object in ``error`` (its last failed job runs again, attempts start over).
retry_action = ObjectAction(
    "retry",
    "Retry the failed job",
    method="retry_failed_job",
    show=lambda obj: getattr(obj, "status", "") == "error",
    help="Run the object's last failed job again (its attempts start over).",
)


def shown_once(
    admin_: ConsoleModelAdmin, request, obj, *, title: str, explanation: str, values: list[tuple[str, str]]
) -> TemplateResponse:
    """The answer page of a write whose secret is shown this once (never in a message: the message
    store may be a cookie; never in the audit trail)."""
    opts = admin_.opts
    context = {
        **admin_.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "object": obj,
        "explanation": explanation,
        "values": values,
        "change_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]),
    }
    return TemplateResponse(request, "admin/jobs/shown_once.html", context)


def created_when(obj) -> str:
    return when(obj.created_at)


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
