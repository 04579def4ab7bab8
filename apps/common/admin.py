"""Admin bases: every save and delete through the admin writes an audit event.

The admin is the operators' console: ``OperatorScopeMiddleware`` lifts tenant scoping for
/admin/, so these classes are where "which tenant" has to be shown, filtered and checked.
"""

import functools
import json
from functools import cached_property

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth import get_permission_codename, get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import EmptyResultSet, ValidationError
from django.core.paginator import Paginator
from django.db import connections, transaction
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from guardian.admin import GuardedModelAdminMixin
from guardian.shortcuts import get_group_perms, get_user_perms

from apps.audit import services as audit
from apps.tenancy.models import Tenant

from .models import IdempotencyRecord


def audit_tenant(obj):
    """The tenant an event about ``obj`` belongs to: a tenant's own events belong to it."""
    return obj if isinstance(obj, Tenant) else getattr(obj, "tenant", None)


def _m2m_names(model, fields, form) -> list[str]:
    return [
        f.name for f in model._meta.many_to_many if f.name in form.cleaned_data and (fields is None or f.name in fields)
    ]


def _related_labels(objs) -> list[str]:
    return sorted(str(o) for o in objs)


class EstimatedCountPaginator(Paginator):
    """A paginator that does not COUNT(*) big result sets on PostgreSQL.

    It asks the planner first (``EXPLAIN``, which reads statistics, not rows); only when the
    estimate is below ``exact_below`` does it run the exact count, which is then cheap. Above
    that the estimate is shown: the page links are approximate, the rows on each page are not.
    Other databases (SQLite for ``make run``) count exactly.
    """

    exact_below = 10_000

    @cached_property
    def count(self) -> int:
        estimate = self.estimate()
        if estimate is not None and estimate >= self.exact_below:
            return estimate
        return super().count

    def estimate(self) -> int | None:
        qs = self.object_list
        if not isinstance(qs, QuerySet) or connections[qs.db].vendor != "postgresql":
            return None
        try:
            sql, params = qs.order_by().query.sql_with_params()
        except EmptyResultSet:  # e.g. an empty IN (): nothing to explain, and the count is 0 at once
            return None
        with connections[qs.db].cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])


class ConsoleModelAdmin(admin.ModelAdmin):
    """What every admin of ours shares: lists that stay fast on big tables, and the "operate"
    permission that admin actions calling services ask for.

    ``@admin.action(permissions=["operate"])`` shows an action only to operators who hold the
    model's ``change`` permission (their group's, see apps/console/groups.py), even on admins
    whose change form is switched off because state changes only through the services.
    """

    paginator = EstimatedCountPaginator
    show_full_result_count = False  # the "N total" link would COUNT(*) the whole table

    def has_operate_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")


class AuditedModelAdmin(ConsoleModelAdmin):
    """Writes ``<model>.create|update|delete`` events, including for rows saved by inlines.

    ``audit_fields`` limits what is recorded (default: every concrete field; secrets are never
    recorded, see ``audit.snapshot``). Many-to-many fields edited on the form are recorded too.
    """

    audit_fields: list[str] | None = None

    def _snapshot(self, obj, form=None, *, old=False) -> dict:
        data = audit.snapshot(obj, self.audit_fields)
        if form is not None and hasattr(form, "cleaned_data"):
            for name in _m2m_names(type(obj), self.audit_fields, form):
                if old:
                    data[name] = _related_labels(getattr(obj, name).all()) if obj.pk else []
                else:
                    data[name] = _related_labels(form.cleaned_data[name] or [])
        return data

    def save_model(self, request, obj, form, change):
        before = None
        if change and obj.pk:
            old = type(obj)._base_manager.filter(pk=obj.pk).first()
            before = self._snapshot(old, form, old=True) if old else None
        super().save_model(request, obj, form, change)
        after = self._snapshot(obj, form)
        if change and not audit.diff(before, after):
            return  # nothing of the row itself changed (inlines write their own events)
        audit.record(
            action=f"{obj._meta.model_name}.{'update' if change else 'create'}",
            obj=obj,
            tenant=audit_tenant(obj),
            actor=request.user,
            before=before,
            after=after,
        )

    def delete_model(self, request, obj):
        self._record_delete(request, obj, audit.snapshot(obj, self.audit_fields))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self._record_delete(request, obj, audit.snapshot(obj, self.audit_fields))
        super().delete_queryset(request, queryset)

    def _record_delete(self, request, obj, before: dict) -> None:
        audit.record(
            action=f"{obj._meta.model_name}.delete",
            obj=obj,
            tenant=audit_tenant(obj),
            actor=request.user,
            before=before,
        )

    def save_formset(self, request, form, formset, change):
        """Inline rows: the same create/update/delete events as rows saved on their own page.

        Only the fields the inline edits are recorded.
        """
        model = formset.model
        fields = list(formset.form.base_fields)
        before = {}
        for inline_form in formset.initial_forms:
            pk = inline_form.instance.pk
            if pk is not None and (inline_form.has_changed() or inline_form in formset.deleted_forms):
                old = model._base_manager.filter(pk=pk).first()
                if old is not None:
                    before[pk] = audit.snapshot(old, fields)
        # Deletions first: once saved, the deleted rows (and their primary keys) are gone.
        for inline_form in formset.deleted_forms:
            obj = inline_form.instance
            if obj.pk in before:
                self._record_delete(request, obj, before[obj.pk])
        formset.save()
        for obj in formset.new_objects:
            audit.record(
                action=f"{model._meta.model_name}.create",
                obj=obj,
                tenant=audit_tenant(obj),
                actor=request.user,
                after=audit.snapshot(obj, fields),
            )
        for obj, _changed in formset.changed_objects:
            audit.record(
                action=f"{model._meta.model_name}.update",
                obj=obj,
                tenant=audit_tenant(obj),
                actor=request.user,
                before=before.get(obj.pk),
                after=audit.snapshot(obj, fields),
            )


class ReadOnlyAdmin(ConsoleModelAdmin):
    """History that must not change by hand: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TenantOwnedForm(forms.ModelForm):
    """Rejects, as a form error, a row that points at another tenant's rows.

    ``TenantOwnedModel.save`` refuses such a row too, but by raising, which the admin would
    turn into a server error. The tenant also takes part in the model's unique constraints
    when it is read-only on the page (it is, once the row exists).
    """

    def _get_validation_exclusions(self):
        exclude = super()._get_validation_exclusions()
        if "tenant" not in self.fields and self.instance.tenant_id is not None:
            exclude.discard("tenant")
        return exclude

    def _post_clean(self):
        super()._post_clean()
        if self.instance.tenant_id is None:
            return  # "tenant" is required: the form already says so
        try:
            self.instance.check_tenant_links()
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)


class TenantOwnedAdmin(AuditedModelAdmin):
    """Shows and filters by tenant; the tenant is chosen once, at creation."""

    form = TenantOwnedForm

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
        return [*fields, "tenant"] if obj is not None and "tenant" not in fields else fields


class AuditedGuardedAdminMixin(GuardedModelAdminMixin):
    """django-guardian's object-permission pages, with each grant or removal audited."""

    def obj_perms_manage_user_view(self, request, object_pk, user_id):
        return self._audited_obj_perms(
            request, object_pk, get_user_model(), user_id, super().obj_perms_manage_user_view, get_user_perms
        )

    def obj_perms_manage_group_view(self, request, object_pk, group_id):
        return self._audited_obj_perms(
            request, object_pk, Group, group_id, super().obj_perms_manage_group_view, get_group_perms
        )

    def _audited_obj_perms(self, request, object_pk, holder_model, holder_id, view, perms_of):
        if request.method != "POST":
            return view(request, object_pk, holder_id)
        with transaction.atomic():
            try:
                obj = self.get_queryset(request).filter(pk=object_pk).first()
                holder = holder_model._default_manager.filter(pk=holder_id).first()
            except (ValueError, ValidationError):
                obj = holder = None
            before = sorted(perms_of(holder, obj)) if obj is not None and holder is not None else None
            response = view(request, object_pk, holder_id)
            if before is not None and response.status_code == 302:
                after = sorted(perms_of(holder, obj))
                if after != before:
                    kind = "user" if holder_model is not Group else "group"
                    audit.record(
                        action=f"{obj._meta.model_name}.permissions_change",
                        obj=obj,
                        tenant=audit_tenant(obj),
                        actor=request.user,
                        changes={f"{kind}:{holder}": [before, after]},
                    )
        return response


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ["key", "user", "tenant_key", "state", "status_code", "created_at"]
    list_filter = ["state", "status_code", "created_at"]
    search_fields = ["key", "user__email", "tenant_key"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    show_full_result_count = False


def apply_each(model_admin, request, queryset, fn, verb: str, noun: str | None = None) -> None:
    """Run a service on each selected row and report per row; the admin never edits state by hand."""
    from django.contrib import messages

    from .exceptions import DomainError

    done = 0
    for obj in queryset:
        try:
            fn(obj)
            done += 1
        except DomainError as exc:
            model_admin.message_user(request, f"{obj}: {exc.message}", messages.WARNING)
    if done:
        counted = f"{done} {noun}" if noun else f"{done} of {len(queryset)}"
        model_admin.message_user(request, f"{verb} {counted}.", messages.SUCCESS)


def confirm_first(action):
    """An admin action that destroys asks first: a page lists the selected rows and runs the action
    only when the operator answers yes (the same round trip as Django's own "delete selected").

    Use under ``@admin.action``; the rows are selected again on the confirming request, with the
    list's filters (the page posts back to the same URL), so the action sees what the page showed.
    """

    @functools.wraps(action)
    def confirming(model_admin, request, queryset):
        if request.POST.get("confirmed") == "yes":
            return action(model_admin, request, queryset)
        opts = model_admin.model._meta
        shown = list(queryset[:101])
        context = {
            **model_admin.admin_site.each_context(request),
            "title": "Are you sure?",
            "opts": opts,
            "description": getattr(confirming, "short_description", action.__name__),
            "objects": shown[:100],
            "more": len(shown) > 100,
            "action_name": request.POST.get("action", action.__name__),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": request.get_full_path(),
        }
        return TemplateResponse(request, "admin/confirm_action.html", context)

    confirming.confirms = True
    return confirming


def related_rows(model, *, filters: dict, columns: list[tuple[str, str]], order: str = "-created_at",
                 limit: int = 20, title: str = "", select: tuple[str, ...] = ()) -> str:  # fmt: skip
    """A small read-only table of the latest related rows (each linked to its page), and a link to
    the whole filtered list: for rows an inline cannot show (no foreign key, or too many)."""
    opts = model._meta
    rows = list(model._base_manager.filter(**filters).select_related(*select).order_by(order)[:limit])
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    everything = f"{reverse(f'admin:{opts.app_label}_{opts.model_name}_changelist')}?{query}"
    if not rows:
        return format_html("<p>No {} yet.</p>", title or opts.verbose_name_plural)
    head = format_html_join("", "<th>{}</th>", ((label,) for label, _attr in columns))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (
                format_html_join(
                    "",
                    "<td>{}</td>",
                    (
                        (
                            format_html(
                                '<a href="{}">{}</a>',
                                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk]),
                                _value(row, attr),
                            )
                            if i == 0
                            else _value(row, attr),
                        )
                        for i, (_label, attr) in enumerate(columns)
                    ),
                ),
            )
            for row in rows
        ),
    )
    more = format_html('<p><a href="{}">All {} →</a></p>', everything, title or opts.verbose_name_plural)
    return format_html('<table class="related-rows"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>{}',
                       head, body, more)  # fmt: skip


def _value(row, attr: str):
    display = getattr(row, f"get_{attr}_display", None)
    value = display() if display is not None else getattr(row, attr)
    if callable(value):  # e.g. "__str__"
        value = value()
    return "—" if value in (None, "") else value


class RecentJobsMixin:
    """An object page that lists the object's latest jobs (jobs point at objects by type and id,
    ``label_lower`` as ``job_enqueue`` stores it, so a table rather than an inline)."""

    readonly_fields = ["recent_jobs"]

    @admin.display(description="Jobs (latest first)")
    def recent_jobs(self, obj):
        from apps.jobs.models import Job

        return related_rows(Job, filters={"object_type": obj._meta.label_lower, "object_id": str(obj.pk)},
                            columns=[("Job", "type"), ("Status", "status"), ("Attempts", "attempts"),
                                     ("Created", "created_at"), ("Finished", "finished_at")], title="jobs")  # fmt: skip
