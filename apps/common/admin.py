"""Admin bases of the ground floor: fast lists, read-only history, actions that call services.

The admin is the operators' console: ``OperatorScopeMiddleware`` lifts tenant scoping for
/admin/. The bases that write audit events are in ``apps.audit.admin_base`` (``AuditedModelAdmin``),
those that show and check "which tenant" in ``apps.tenancy.admin_base`` (``TenantOwnedAdmin``), and
an object's latest jobs in ``apps.jobs.admin_base`` (``RecentJobsMixin``).
"""

import contextlib
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import AutocompleteSelect, AutocompleteSelectMultiple
from django.contrib.auth import get_permission_codename
from django.core.exceptions import EmptyResultSet, FieldDoesNotExist, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import DateField, DateTimeField, DecimalField, QuerySet
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from . import display
from .display import badge, money, when
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


@dataclass(frozen=True)
class ObjectAction:
    """A button on an object's page that runs one service call on that object.

    Declared once per admin (``object_actions = [ObjectAction("issue", "Issue", method="issue_one")]``);
    ``method`` names the admin's handler ``handler(request, obj, data) -> str | HttpResponse | None``
    (``data``: the form's cleaned data, or ``{}``). A string is the success message (None: "<label>:
    done."), a response is answered as is (e.g. a PDF). A ``DomainError`` the service raises is shown
    to the operator (as a form error when there is a form), never a 500.

    - ``permission``: ``"operate"`` (the model's change permission, what the operator's group holds:
      apps/console/groups.py), a permission name (``"billing.add_creditnote"``) or a callable
      ``(request, obj) -> bool``. Operators without it see no button and get 403 on its URL.
    - ``confirm``: destructive actions ask first, on a page in ``confirm_first``'s look (a string
      is the question; True: "<label>: are you sure?").
    - ``form``: a form class asked for first on its own page (``initial(obj) -> dict`` prefills it).
    - ``preview``: the admin's method ``(request, obj, data) -> html`` shown with the answers for a
      last confirmation (e.g. a plan change's proration) before the handler runs.
    - ``show``: ``(obj) -> bool``, whether the button makes sense in the object's state (the service
      still decides: a hidden action posted anyway gets the service's answer).
    - ``http_method``: ``"get"`` for safe reads (a PDF download) that run on a plain link.
    """

    name: str
    label: str
    method: str
    permission: str | Callable[[Any, Any], bool] = "operate"
    confirm: bool | str = False
    form: type[forms.Form] | None = None
    initial: Callable[[Any], dict] | None = None
    preview: str | None = None
    show: Callable[[Any], bool] | None = None
    http_method: str = "post"
    style: str = ""  # "danger" for the destructive ones: a red button
    help: str = ""  # what it does, shown on its page

    @property
    def needs_page(self) -> bool:
        return bool(self.confirm or self.form or self.preview)


class ConsoleModelAdmin(admin.ModelAdmin):
    """What every admin of ours shares: lists that stay fast on big tables, the "operate"
    permission that admin actions calling services ask for, and object actions (buttons on an
    object's page, ``object_actions``: see ``ObjectAction``).

    ``@admin.action(permissions=["operate"])`` shows an action only to operators who hold the
    model's ``change`` permission (their group's, see apps/console/groups.py), even on admins
    whose change form is switched off because state changes only through the services.
    """

    paginator = EstimatedCountPaginator
    show_full_result_count = False  # the "N total" link would COUNT(*) the whole table
    object_actions: list[ObjectAction] = []

    # -- the tenant first: a tenant's row offers only that tenant's rows to choose from --------------

    def tenant_field(self):
        """The model's ``tenant`` foreign key, or None (a model that belongs to no tenant)."""
        try:
            field = self.model._meta.get_field("tenant")
        except FieldDoesNotExist:
            return None
        return field if field.is_relation else None

    def chosen_tenant_id(self, request, obj=None):
        """The tenant this page is for: the object's; on an add page ``?tenant=`` (or the posted
        choice), or the tenant of the row it was opened for (``?customer=``, ``?zone=``…: any
        tenant-owned row the model points at). None: not chosen yet."""
        if obj is not None:
            return getattr(obj, "tenant_id", None)
        if self.tenant_field() is None:
            return None
        data = request.POST if request.method == "POST" else request.GET
        try:
            if data.get("tenant"):
                tenants = self.tenant_field().related_model._base_manager
                return tenants.filter(pk=data["tenant"]).values_list("pk", flat=True).first()
            for name in self.tenant_owned_links():
                if data.get(name):
                    related = self.model._meta.get_field(name).related_model._base_manager
                    return related.filter(pk=data[name]).values_list("tenant_id", flat=True).first()
        except (ValueError, ValidationError):  # a malformed id: nothing is chosen
            return None
        return None

    def tenant_owned_links(self) -> list[str]:
        """The model's foreign keys to tenant-owned rows (a customer, a node, a zone…)."""
        return [
            field.name
            for field in self.model._meta.get_fields()
            if field.is_relation and field.concrete and field.many_to_one and field.name != "tenant"
            and any(f.name == "tenant" for f in field.related_model._meta.get_fields())
        ]  # fmt: skip

    def tenant_choice_fields(self, request) -> list[str]:
        """The add form's choices of tenant-owned rows (a customer, a node…), the tenant's own aside."""
        fields = set(self.get_fields(request))
        return [name for name in self.tenant_owned_links() if name in fields]

    def get_form(self, request, obj=None, change=False, **kwargs):
        request._console_tenant_id = self.chosen_tenant_id(request, obj)
        return super().get_form(request, obj, change=change, **kwargs)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        return narrowed(formfield, db_field, getattr(request, "_console_tenant_id", None))

    def add_view(self, request, form_url="", extra_context=None):
        """A tenant's row opened without a tenant asks for it first (the tenant picker), so its
        page never lists every tenant's customers, nodes or products to choose from."""
        if (
            request.method == "GET"
            and self.chosen_tenant_id(request) is None
            and self.tenant_field() is not None
            and self.has_add_permission(request)
            and self.tenant_choice_fields(request)
        ):
            tenants = list(self.tenant_field().related_model._base_manager.order_by("name")[:1000])
            if len(tenants) > 1:
                return self.tenant_picker(request, tenants)
            if tenants:  # one tenant: it is the choice, nothing to ask
                query = request.GET.copy()
                query["tenant"] = str(tenants[0].pk)
                request.GET = query
        return super().add_view(request, form_url, extra_context)

    def tenant_picker(self, request, tenants):
        opts = self.opts
        choices = []
        for tenant in tenants:
            query = request.GET.copy()
            query["tenant"] = str(tenant.pk)
            choices.append((tenant, f"{request.path}?{query.urlencode()}"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Add {opts.verbose_name}: for which tenant?",
            "opts": opts,
            "choices": choices,
            "changelist_url": reverse(
                f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=self.admin_site.name
            ),
        }
        return TemplateResponse(request, "admin/tenant_picker.html", context)

    def get_search_results(self, request, queryset, search_term):
        """The autocomplete of a page for one tenant (``?tenant=`` on its URL, see ``narrowed``)
        lists that tenant's rows only."""
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        tenant = request.GET.get("tenant")
        match = getattr(request, "resolver_match", None)
        if tenant and match is not None and match.url_name == "autocomplete" and self.tenant_field() is not None:
            try:
                queryset = queryset.filter(tenant_id=tenant)
            except (ValueError, ValidationError):
                queryset = queryset.none()
        return queryset, may_have_duplicates

    def has_operate_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")

    # -- object actions ---------------------------------------------------------------------------

    def object_action_scope(self, obj):
        """The context a handler runs in (e.g. the object's tenant scope); override per admin."""
        return contextlib.nullcontext()

    def object_action_allowed(self, request, action: ObjectAction, obj) -> bool:
        perm = action.permission
        if callable(perm):
            return bool(perm(request, obj))
        if perm == "operate":
            return self.has_operate_permission(request)
        return request.user.has_perm(perm)

    def get_object_action_form(self, request, action: ObjectAction, obj) -> type[forms.Form] | None:
        """The form an action asks for on ``obj`` (override for a form that depends on the object)."""
        return action.form

    def object_action_url(self, action: ObjectAction, obj) -> str:
        opts = self.opts
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_object_action", args=[obj.pk, action.name],
                       current_app=self.admin_site.name)  # fmt: skip

    def object_actions_for(self, request, obj) -> list[dict]:
        """The buttons ``obj``'s page shows this operator: permitted, and sensible in its state."""
        shown = []
        for action in self.object_actions:
            if action.show is not None and not action.show(obj):
                continue
            if not self.object_action_allowed(request, action, obj):
                continue
            shown.append({
                "name": action.name, "label": action.label, "url": self.object_action_url(action, obj),
                "link": action.http_method == "get" or action.needs_page, "style": action.style,
            })  # fmt: skip
        return shown

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk is not None and not add:
            context["object_actions"] = self.object_actions_for(request, obj)
            titled = getattr(self, "object_title", None)  # a human name where __str__ is not one
            if titled is not None:
                context["object_title"] = context["subtitle"] = titled(obj)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def get_urls(self):
        opts = self.opts
        view = self.admin_site.admin_view(self.object_action_view)
        name = f"{opts.app_label}_{opts.model_name}_object_action"
        return [path("<path:object_id>/do/<str:action>/", view, name=name), *super().get_urls()]

    def object_action_view(self, request, object_id, action):
        chosen = next((a for a in self.object_actions if a.name == action), None)
        if chosen is None:
            raise Http404("No such action.")
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such object.")
        if not self.has_view_permission(request, obj) or not self.object_action_allowed(request, chosen, obj):
            raise PermissionDenied
        back = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk],
                       current_app=self.admin_site.name)  # fmt: skip
        if chosen.http_method == "get":
            if request.method not in ("GET", "HEAD"):
                return HttpResponseNotAllowed(["GET"])
            return self._run_object_action(request, chosen, obj, {}, back, form=None)
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        form = None
        form_class = self.get_object_action_form(request, chosen, obj)
        if form_class is not None:
            initial = chosen.initial(obj) if chosen.initial else {}
            form = form_class(request.POST if request.method == "POST" else None, initial=initial)
        if request.method == "POST" and (form is None or form.is_valid()):
            data = dict(form.cleaned_data) if form is not None else {}
            answered = request.POST.get("confirmed") == "yes"
            if chosen.preview and not answered:
                try:
                    with self.object_action_scope(obj):
                        preview = getattr(self, chosen.preview)(request, obj, data)
                except DomainError as exc:
                    self._domain_error(request, exc, form, obj)
                else:
                    return self._object_action_page(request, chosen, obj, form, back, preview=preview)
            elif chosen.confirm and not answered and form is None:
                pass  # a POST without the answer (e.g. from the button): ask first
            else:
                response = self._run_object_action(request, chosen, obj, data, back, form=form)
                if response is not None:
                    return response
        return self._object_action_page(request, chosen, obj, form, back)

    def _domain_error(self, request, exc: DomainError, form, obj) -> None:
        field = getattr(exc, "field", None)
        if form is not None:
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            self.message_user(request, f"{obj}: {exc.message}", messages.ERROR)

    def _run_object_action(self, request, action: ObjectAction, obj, data: dict, back: str, *, form):
        """Run the handler; answer its response, or a message and the object's page. With a form,
        a refused call returns None: the form page is shown again with the service's error."""
        try:
            with self.object_action_scope(obj):
                result = getattr(self, action.method)(request, obj, data)
        except DomainError as exc:
            self._domain_error(request, exc, form, obj)
            if form is not None:
                return None
            return HttpResponseRedirect(back)
        if isinstance(result, HttpResponse):
            return result
        self.message_user(request, result or f"{action.label}: done.", messages.SUCCESS)
        return HttpResponseRedirect(back)

    def _object_action_page(self, request, action: ObjectAction, obj, form, back: str, preview=None):
        opts = self.opts
        question = action.confirm if isinstance(action.confirm, str) else ""
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action.label}: {obj}",
            "opts": opts,
            "object": obj,
            "action": action,
            "question": question,
            "form": form,
            "preview": preview,
            "confirming": bool(preview) or (bool(action.confirm) and form is None),
            "back_url": back,
            "changelist_url": reverse(
                f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=self.admin_site.name
            ),
            "media": self.media + (form.media if form is not None else forms.Media()),
        }
        return TemplateResponse(request, "admin/object_action.html", context)


class TenantAutocomplete(AutocompleteSelect):
    """An autocomplete whose searches carry the page's tenant (``?tenant=``)."""

    tenant_id = None

    def get_url(self):
        return f"{super().get_url()}?tenant={self.tenant_id}"


class TenantAutocompleteMultiple(TenantAutocomplete, AutocompleteSelectMultiple):
    pass


def narrowed(formfield, db_field, tenant_id):
    """``formfield`` offering only ``tenant_id``'s rows when it chooses tenant-owned rows and the
    page is for one tenant (its autocomplete, if any, searches that tenant only)."""
    if formfield is None or tenant_id is None or db_field.name == "tenant":
        return formfield
    related = db_field.related_model
    if not any(f.name == "tenant" for f in related._meta.get_fields()) or not hasattr(formfield, "queryset"):
        return formfield
    formfield.queryset = formfield.queryset.filter(tenant_id=tenant_id)
    widget = formfield.widget
    inner = getattr(widget, "widget", widget)  # inside RelatedFieldWidgetWrapper
    if isinstance(inner, AutocompleteSelect) and not isinstance(inner, TenantAutocomplete):
        inner.__class__ = (
            TenantAutocompleteMultiple if isinstance(inner, AutocompleteSelectMultiple) else TenantAutocomplete
        )
        inner.tenant_id = tenant_id
    if hasattr(inner, "choices"):
        inner.choices = formfield.choices
    return formfield


class ServiceFormMixin:
    """Add and change pages whose save is ONE service call (the API's), never ``Model.save()``.

    The admin validates the page's form and inlines as usual, then calls ``service_save(request,
    form, formsets, change) -> obj`` instead of saving them. A ``DomainError`` the service raises
    (its own rules, e.g. an amount finer than the currency's cent) rolls everything back and shows
    the page again with the service's message on the form (on its field when the form has it).
    """

    def service_save(self, request, form, formsets, change):
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        pass  # the service writes, in save_related, with the inlines' rows

    def delete_queryset(self, request, queryset):
        """The list's bulk delete is ``delete_model`` (a service call) on each row, never one SQL DELETE."""
        for obj in queryset:
            self.delete_model(request, obj)

    def save_related(self, request, form, formsets, change):
        saved = self.service_save(request, form, formsets, change)
        # The page's object becomes the saved row: the admin's log entry and redirect use its pk.
        form.instance.__dict__.update(saved.__dict__)
        for formset in formsets:  # what the admin's change message reads; the service saved the rows
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:  # the transaction of the first pass rolled back: nothing written
            request._service_refusal = exc
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change, **kwargs)
        refusal = getattr(request, "_service_refusal", None)
        if refusal is None:
            return form_class

        class Refused(form_class):
            def clean(self):
                cleaned = super().clean()
                field = getattr(refusal, "field", None)
                self.add_error(field if field in self.fields else None, refusal.message)
                return cleaned

        Refused.__name__ = form_class.__name__
        return Refused


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
    list_display = ["key", "principal", "user", "tenant_key", "state", "status_code", "created_at"]
    list_filter = ["state", "status_code", "created_at"]
    search_fields = ["key", "principal", "user__email", "tenant_key"]
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


def amount_column(field: str, description: str, currency: str = "currency"):
    """A list/page column showing ``field`` as money in the row's currency."""

    @admin.display(description=description, ordering=field)
    def column(self, obj):
        cur = obj
        for part in currency.split("."):
            cur = getattr(cur, part)
        return money(getattr(obj, field), cur)

    column.__name__ = f"{field}_money"
    return column


def status_column(field: str = "status", description: str = "Status"):
    @admin.display(description=description, ordering=field)
    def column(self, obj):
        value = getattr(obj, field)
        label = getattr(obj, f"get_{field}_display", lambda: None)()
        return badge(value, label)

    column.__name__ = f"{field}_badge"
    return column


def time_column(field: str, description: str):
    @admin.display(description=description, ordering=field)
    def column(self, obj):
        return when(getattr(obj, field))

    column.__name__ = f"{field}_when"
    return column


def link(obj, text=None):
    """A link to ``obj``'s admin page (no query: the URL is built from the pk)."""
    if obj is None:
        return "—"
    opts = obj._meta
    return format_html(
        '<a href="{}">{}</a>',
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]),
        text if text is not None else obj,
    )


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
