"""The jobs' admin, and the base of every admin whose objects a service writes (hosting objects).

``ServiceAdmin`` + ``ServiceForm``: an add or change page whose save *is* a service call. The form
checks the shapes of the fields, then ``act`` calls the service inside the admin's transaction, in
the object's tenant scope (the services read with the tenant-scoped managers; the admin otherwise
sees every tenant) and marked ``via="operator"`` in the audit trail. A refusal of the service
(``DomainError``) comes back as a form error on its field, and anything the service or the page's
other parts wrote is rolled back: never a 500, never a half-written row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from apps.common import context
from apps.common.admin import ConsoleModelAdmin, ReadOnlyAdmin, ReadOnlyInline, apply_each, confirm_first
from apps.common.display import badge, when
from apps.common.exceptions import Conflict, DomainError
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


def refusal_as_form_error(form: forms.Form, exc: DomainError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


class ServiceForm(forms.ModelForm):
    """A form whose save is ``act(data, actor)``, a service call (see the module's docstring).

    ``act`` answers the object the service wrote; ``self.extra`` may keep what is shown once (a
    password). ``changed(data, names)`` gives the update services only the fields the operator changed.
    """

    request: HttpRequest | None = None  # set per request by ServiceAdmin.get_form

    def act(self, data: dict, actor) -> models.Model:
        raise NotImplementedError

    def tenant_for(self, data: dict):
        return data.get("tenant") if self.instance._state.adding else self.instance.tenant

    def changed(self, data: dict, names) -> dict:
        return {name: data[name] for name in names if name in self.changed_data and name in data}

    def _post_clean(self) -> None:
        # No model validation here: the service owns the rules (and a half-built instance would fail
        # them for fields only the service fills, e.g. the node a pod is placed on).
        if self._errors:
            return
        tenant = self.tenant_for(self.cleaned_data)
        if tenant is None:
            return  # "tenant" is required: the field says so
        self.extra: dict[str, Any] = {}
        try:
            with transaction.atomic(), operating(tenant):
                result = self.act(self.cleaned_data, self.request.user)
        except DomainError as exc:
            refusal_as_form_error(self, exc)
            return
        except ValidationError as exc:  # a model's own clean() the service ran (e.g. a node's address)
            for field, errors in exc.message_dict.items() if hasattr(exc, "error_dict") else [(None, exc.messages)]:
                self.add_error(field if field in self.fields else None, errors)
            return
        if isinstance(result, models.Model):
            self.instance = result

    def save(self, commit: bool = True) -> models.Model:
        self.save_m2m = lambda: None  # the service wrote everything
        return self.instance


def object_action(
    label: str,
    *,
    confirm: bool = False,
    permission: str = "operate",
    description: str = "",
    available: Callable[[Any], bool] = lambda obj: True,
    form: type[forms.Form] | None = None,
    prepare: Callable | None = None,
):
    """Declare a ``ServiceAdmin`` method ``(self, request, obj, data)`` as a button on the object page."""

    def mark(fn):
        fn.object_action = {
            "label": label,
            "confirm": confirm,
            "permission": permission,
            "when": available,
            "form": form,
            "prepare": prepare,
            "description": description or label,
        }
        return fn

    return mark


class ServiceAdmin(RecentJobsMixin, ConsoleModelAdmin):
    """An admin whose writes are services: ``add_form`` (fields ``add_fields``) on the add page,
    ``form`` (editable ``change_fields``, read-only ``shown_fields``) on the change page.

    Buttons on the object page (``object_actions``, method names decorated with ``object_action``)
    post to ``<pk>/act/<name>/``; each asks for its permission (default: the model's ``change``)
    and, when ``confirm`` is set, a confirmation page first. The object's latest jobs are listed and
    its last failed one can be retried. Rows are never deleted by Django's own delete: the
    ``delete`` button calls the service.
    """

    add_form: type[ServiceForm] = ServiceForm
    form: type[ServiceForm] = ServiceForm
    add_fields: list[str] = []
    change_fields: list[str] = []
    shown_fields: list[str] = []
    object_actions: list[str] = []
    change_form_template = "admin/jobs/service_change_form.html"

    # --- pages -------------------------------------------------------------------------------
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
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request = request  # a new class per call (modelform_factory): no request leaks between calls
        return form

    def get_inlines(self, request, obj):
        return [] if obj is None else super().get_inlines(request, obj)

    def save_model(self, request, obj, form, change):
        pass  # the form's service call wrote the row (and audited it)

    def save_related(self, request, form, formsets, change):
        pass

    def has_delete_permission(self, request, obj=None):
        return False  # the "Delete" button calls the service (a job may have work to do first)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        with transaction.atomic():
            response = super().changeform_view(request, object_id, form_url, extra_context)
            data = getattr(response, "context_data", None) or {}
            if request.method == "POST" and data.get("errors"):
                # The page came back with errors: undo what the service calls of its valid parts wrote.
                transaction.set_rollback(True)
        return response

    def save_form(self, request, form, change):
        request.service_extra = getattr(form, "extra", {})  # e.g. a password the service answered
        return form.save(commit=False)

    def response_add(self, request, obj, post_url_continue=None):
        page = self.after_add(request, obj, getattr(request, "service_extra", {}))
        return page if page is not None else super().response_add(request, obj, post_url_continue)

    def after_add(self, request, obj, extra: dict):
        """A page to answer the add with instead of the usual redirect (a secret shown once)."""
        return None

    # --- buttons -----------------------------------------------------------------------------
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/act/<str:name>/",
                self.admin_site.admin_view(self.object_action_view),
                name="{}_{}_act".format(*info),
            ),
            *super().get_urls(),
        ]

    def actions_for(self, request, obj) -> list[dict]:
        """The buttons this operator may press on ``obj`` now (its state allows the move)."""
        out = []
        for name in self.object_actions:
            fn = getattr(self, name)
            spec = fn.object_action
            if not self._may(request, spec) or not spec["when"](obj):
                continue
            url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_act", args=[obj.pk, name])
            out.append(
                {
                    "name": name,
                    "label": spec["label"],
                    "url": url,
                    "destructive": spec["confirm"],
                    "form": spec["form"] is not None,
                }
            )
        return out

    def _may(self, request, spec) -> bool:
        perm = spec["permission"]
        if perm == "operate":
            return self.has_operate_permission(request)
        return request.user.has_perm(f"{self.opts.app_label}.{perm}_{self.opts.model_name}")

    def object_action_view(self, request, object_id, name):
        fn = getattr(self, name, None) if name in self.object_actions else None
        if fn is None:
            raise PermissionDenied
        spec = fn.object_action
        if not self._may(request, spec):
            raise PermissionDenied
        obj = get_object_or_404(self.get_queryset(request), pk=object_id)
        change_url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk])
        form = spec["form"](request.POST or None) if spec["form"] else None
        if form is not None and spec.get("prepare"):
            spec["prepare"](self, form, obj)
        ready = request.method == "POST" and (form is None or form.is_valid())
        if ready and spec["confirm"] and request.POST.get("confirmed") != "yes":
            ready = False
        if not ready:
            context = {
                **self.admin_site.each_context(request),
                "title": spec["label"],
                "opts": self.opts,
                "object": obj,
                "form": form,
                "confirm": spec["confirm"],
                "change_url": change_url,
                "description": spec["description"],
                "action_url": request.path,
            }
            return TemplateResponse(request, "admin/jobs/object_action.html", context)
        data = form.cleaned_data if form is not None else {}
        try:
            with transaction.atomic(), operating(obj.tenant):
                answer = fn(request, obj, data)
        except DomainError as exc:
            if form is not None:
                refusal_as_form_error(form, exc)
                context = {
                    **self.admin_site.each_context(request),
                    "title": spec["label"],
                    "opts": self.opts,
                    "object": obj,
                    "form": form,
                    "confirm": False,
                    "change_url": change_url,
                    "description": spec["description"],
                    "action_url": request.path,
                }
                return TemplateResponse(request, "admin/jobs/object_action.html", context)
            self.message_user(request, f"{obj}: {exc.message}", messages.WARNING)
            return HttpResponseRedirect(change_url)
        if answer is not None:  # e.g. a page that shows a new password once
            return answer
        self.message_user(request, f"{spec['label']}: done for {obj}.", messages.SUCCESS)
        return HttpResponseRedirect(self.object_action_done_url(obj) or change_url)

    def object_action_done_url(self, obj) -> str | None:
        """Where a button's success lands (default: the object's page)."""
        return None

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["object_actions"] = self.actions_for(request, obj) if obj is not None else []
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="Jobs (latest first)")
    def recent_jobs(self, obj):
        rows = list(
            Job.all_tenants.filter(object_type=obj._meta.label_lower, object_id=str(obj.pk)).order_by("-created_at")[
                :20
            ]
        )
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

    @object_action(
        "Retry the failed job",
        available=lambda obj: getattr(obj, "status", "") == "error",
        description="Run the object's last failed job again (its attempts start over).",
    )
    def retry_failed_job(self, request, obj, data):
        job = self.last_failed_job(obj)
        if job is None:
            raise Conflict("This object has no failed job to retry.")
        services.job_retry(job=job, actor=request.user)

    def last_failed_job(self, obj) -> Job | None:
        return (
            Job.all_tenants.filter(
                object_type=obj._meta.label_lower,
                object_id=str(obj.pk),
                status__in=[JobStatus.FAILED, JobStatus.CANCELLED],
            )
            .order_by("-created_at")
            .first()
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


def status_badge(obj) -> str:
    return badge(obj.status, obj.get_status_display())


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
