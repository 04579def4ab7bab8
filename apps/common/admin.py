"""Admin bases of the ground floor: fast lists, read-only history, actions that call services.

The admin is the operators' console: ``OperatorScopeMiddleware`` lifts tenant scoping for
/admin/. The bases that write audit events are in ``apps.audit.admin_base`` (``AuditedModelAdmin``),
those that show and check "which tenant" in ``apps.tenancy.admin_base`` (``TenantOwnedAdmin``), and
an object's latest jobs in ``apps.jobs.admin_base`` (``RecentJobsMixin``).
"""

import functools
import json
from functools import cached_property

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_permission_codename
from django.core.exceptions import EmptyResultSet, FieldDoesNotExist
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import DateField, DateTimeField, DecimalField, QuerySet
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from . import display
from .exceptions import DomainError
from .models import IdempotencyRecord


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
    the whole filtered list: for rows an inline cannot show (no foreign key, or too many).

    Cells are shown as people read them (``_value``): times to the minute, statuses as badges,
    amounts with their currency."""
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
    return format_html('<div class="related-rows-wrap"><table class="related-rows"><thead><tr>{}</tr></thead>'
                       "<tbody>{}</tbody></table></div>{}", head, body, more)  # fmt: skip


def _value(row, attr: str):
    """One cell as people read it: a status as a badge, a time to the minute, an amount in its
    row's currency, a choice by its label; anything else as it is."""
    try:
        field = row._meta.get_field(attr)
    except FieldDoesNotExist:
        field = None
    raw = getattr(row, attr)
    if callable(raw):  # e.g. "__str__"
        raw = raw()
    if field is not None and field.choices and attr == "status":
        label = getattr(row, f"get_{attr}_display")()
        return display.badge(raw, str(label))
    if isinstance(field, DateTimeField | DateField):
        return display.when(raw)
    if isinstance(field, DecimalField) and getattr(row, "currency", None):
        return display.money(raw, row.currency)
    if field is not None and field.choices:
        return getattr(row, f"get_{attr}_display")() if raw not in (None, "") else display.EMPTY
    return display.EMPTY if raw in (None, "") else raw
