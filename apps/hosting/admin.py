"""Hosting accounts and to-dos in the operators' console, written through the same services as the
API: an account's limit overrides (refused below usage), closing a to-do, running the
reconciliation check now."""

from django import forms
from django.contrib import admin

from apps.common.admin import ObjectAction, apply_each, status_column
from apps.common.display import when
from apps.jobs.admin import ServiceAdmin, ServiceForm, operating

from . import reconciliation, services
from .models import HostingAccount, Todo, TodoStatus


class HostingAccountForm(ServiceForm):
    limit_overrides = forms.JSONField(
        required=False, initial=dict,
        help_text='On top of the plan, e.g. {"websites": 10, "disk_quota_mb": null} (null: unlimited); {}: the plan.',
    )  # fmt: skip

    class Meta:
        model = HostingAccount
        fields = ["limit_overrides"]

    def act(self, data, actor):
        if "limit_overrides" not in self.changed_data:
            return self.instance
        return services.account_set_overrides(account=self.instance, overrides=data.get("limit_overrides") or {},
                                              actor=actor)  # fmt: skip


@admin.register(HostingAccount)
class HostingAccountAdmin(ServiceAdmin):
    """Accounts are made by their plan's subscription (paid → active; suspended, resumed, cancelled
    with it); operators change an account's limits here and see its usage."""

    list_display = ["__str__", "status_shown", "customer", "plan", "node", "disk_used_mb", "measured", "tenant"]
    list_filter = ["status", "tenant"]
    search_fields = ["domain", "system_user", "id"]
    list_select_related = ["customer", "node", "tenant", "subscription__product"]
    form = HostingAccountForm
    change_fields = ["limit_overrides"]
    shown_fields = [
        "tenant", "status_shown", "customer", "subscription", "node", "system_user", "domain", "website",
        "mail_domain", "limits", "usage", "over_quota", "last_error",
    ]  # fmt: skip
    object_actions = [
        ObjectAction("refresh", "Recompute limits", method="refresh_one",
                     help="Read the plan's and its add-ons' limits again."),
    ]  # fmt: skip

    def has_add_permission(self, request):
        return False  # an account is made by paying its plan's first invoice

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    status_shown = status_column(description="status")

    @admin.display(description="plan")
    def plan(self, account):
        return account.subscription.product.name

    @admin.display(description="disk measured")
    def measured(self, account):
        return when(account.disk_measured_at)

    @admin.display(description="over quota since")
    def over_quota(self, account):
        return when(account.over_quota_since)

    @admin.display(description="usage")
    def usage(self, account):
        rows = services.account_usage(account)
        return "; ".join(
            f"{key}: {row['used']} of {'unlimited' if row['limit'] is None else row['limit']}"
            for key, row in rows.items()
        )

    def refresh_one(self, request, account, data):
        services.account_refresh_limits(account, actor=request.user)
        return f"{account}: limits recomputed."


class TodoCloseForm(forms.Form):
    resolution = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))


@admin.register(Todo)
class TodoAdmin(ServiceAdmin):
    """The staff's to-do list: sold services to deliver and what the reconciliation check could
    not fix by itself. Closing one records who closed it and how."""

    list_display = ["title", "kind", "status_shown", "customer", "seen", "tenant"]
    list_filter = ["status", "kind", "tenant"]
    search_fields = ["title", "detail", "object_id"]
    list_select_related = ["customer", "tenant"]
    actions = ["close_todos", "reconcile_now"]
    shown_fields = [
        "tenant", "kind", "status_shown", "title", "detail", "customer", "subscription", "object_type", "object_id",
        "seen", "closed_at", "closed_by", "resolution",
    ]  # fmt: skip
    object_actions = [
        ObjectAction("close", "Close", method="close_one", form=TodoCloseForm,
                     show=lambda t: t.status == TodoStatus.OPEN, help="The work is done (or needs none)."),
    ]  # fmt: skip

    def has_add_permission(self, request):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    status_shown = status_column(description="status")

    @admin.display(description="last seen", ordering="last_seen_at")
    def seen(self, todo):
        return when(todo.last_seen_at)

    def close_one(self, request, todo, data):
        services.todo_close(todo=todo, resolution=data.get("resolution", ""), actor=request.user)
        return f"Closed: {todo.title}"

    @admin.action(description="Close the selected to-dos", permissions=["operate"])
    def close_todos(self, request, queryset):
        def one(todo):
            with operating(todo.tenant):
                services.todo_close(todo=todo, actor=request.user)

        apply_each(self, request, queryset.filter(status=TodoStatus.OPEN), one, "Closing", "to-do(s)")

    @admin.action(description="Run the reconciliation check now for the selected to-dos' tenants",
                  permissions=["operate"])  # fmt: skip
    def reconcile_now(self, request, queryset):
        tenants = {todo.tenant for todo in queryset.select_related("tenant")}
        for tenant in tenants:
            report = reconciliation.reconcile_tenant(tenant)
            self.message_user(request, f"{tenant}: {report.as_dict()}")
