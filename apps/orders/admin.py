"""Orders in the operators' console: placed from the admin (a customer and catalog items, priced by
``orders.order_create`` as the API does), then accepted into one invoice or cancelled by buttons."""

from django import forms
from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse

from apps.billing.periods import RECURRING_CYCLES
from apps.catalog.models import Cycle
from apps.common.admin import (
    ObjectAction,
    ReadOnlyAdmin,
    ReadOnlyInline,
    ServiceFormMixin,
    amount_column,
    link,
    status_column,
    time_column,
)
from apps.common.display import money
from apps.common.money import CURRENCY_CHOICES
from apps.tenancy.scoping import tenant_scope

from . import services
from .models import Order, OrderItem, OrderStatus


class OrderItemInline(ReadOnlyInline):
    model = OrderItem
    fields = readonly_fields = [
        "product",
        "cycle",
        "quantity",
        "unit_money",
        "setup_money",
        "total_money",
        "subscription_link",
    ]
    unit_money = amount_column("unit_price", "Unit price", "order.currency")
    setup_money = amount_column("setup_fee", "Setup fee", "order.currency")
    total_money = amount_column("total", "Total", "order.currency")

    @admin.display(description="Subscription")
    def subscription_link(self, item):
        return link(item.subscription, "Its subscription") if item.subscription_id else "—"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product", "subscription")


class OrderItemForm(forms.ModelForm):
    cycle = forms.ChoiceField(
        choices=[(c, Cycle(c).label) for c in [*RECURRING_CYCLES, Cycle.ONETIME]], initial="monthly"
    )

    class Meta:
        model = OrderItem
        fields = ["product", "cycle", "quantity"]


class NewItemInline(admin.TabularInline):
    """The items of a new order (catalog products), priced by the service, never here."""

    model = OrderItem
    form = OrderItemForm
    extra = 2
    autocomplete_fields = ["product"]
    verbose_name = "item"

    def has_add_permission(self, request, obj=None):
        return obj is None and request.user.has_perm("orders.add_order")

    def has_change_permission(self, request, obj=None):
        return obj is None and request.user.has_perm("orders.add_order")

    def has_delete_permission(self, request, obj=None):
        return obj is None and request.user.has_perm("orders.add_order")

    def has_view_permission(self, request, obj=None):
        return True


class OrderForm(forms.ModelForm):
    currency = forms.ChoiceField(
        choices=[("", "The customer's currency"), *((c, c) for c in CURRENCY_CHOICES)], required=False
    )

    class Meta:
        model = Order
        fields = ["customer", "currency", "notes"]


@admin.register(Order)
class OrderAdmin(ServiceFormMixin, ReadOnlyAdmin):
    form = OrderForm
    list_display = ["__str__", "customer", "status", "total_money", "invoice", "created", "tenant"]
    list_filter = ["status", "currency", "tenant"]
    search_fields = ["customer__name", "customer__email", "id"]
    list_select_related = ["customer", "invoice", "tenant"]
    show_full_result_count = False
    autocomplete_fields = ["customer"]
    object_actions = [
        ObjectAction(
            "accept",
            "Accept",
            method="accept_one",
            show=lambda o: o.status == OrderStatus.PENDING,
            help="Create its subscriptions and ONE invoice for them; paying the invoice completes the order.",
        ),
        ObjectAction(
            "cancel",
            "Cancel",
            method="cancel_one",
            confirm=True,
            style="danger",
            show=lambda o: o.status in (OrderStatus.PENDING, OrderStatus.ACCEPTED),
            help="An accepted order's unpaid invoice is voided and its pending subscriptions cancelled.",
        ),
    ]
    status_badge = status_column()
    status = status_column()  # the list column keeps its name (field-status)
    total_money = amount_column("total", "Total")
    created = time_column("created_at", "Placed")

    def object_action_scope(self, obj):
        return tenant_scope(obj.tenant)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request):
        return admin.ModelAdmin.has_add_permission(self, request)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("customer", "invoice", "tenant")

    def get_inlines(self, request, obj):
        return [NewItemInline] if obj is None else [OrderItemInline]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["customer", "currency", "notes"]
        return [
            "customer_link",
            "status_badge",
            "figures",
            "invoice_link",
            "placed",
            "accepted",
            "completed",
            "cancelled",
            "notes",
            "tenant",
        ]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    @admin.display(description="Customer")
    def customer_link(self, obj):
        return link(obj.customer, obj.customer.name)

    @admin.display(description="Invoice")
    def invoice_link(self, obj):
        return link(obj.invoice) if obj.invoice_id else "— (on acceptance)"

    @admin.display(description="Amounts")
    def figures(self, obj):
        cur = obj.currency
        return f"{money(obj.subtotal, cur)} + tax {money(obj.tax_total, cur)} = {money(obj.total, cur)}"

    placed = time_column("created_at", "Placed")
    accepted = time_column("accepted_at", "Accepted")
    completed = time_column("completed_at", "Completed")
    cancelled = time_column("cancelled_at", "Cancelled")

    def service_save(self, request, form, formsets, change):
        data = form.cleaned_data
        customer = data["customer"]
        items = [
            {
                "product": f.cleaned_data["product"],
                "cycle": f.cleaned_data["cycle"],
                "quantity": f.cleaned_data.get("quantity") or 1,
            }
            for formset in formsets
            for f in formset.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE") and f.cleaned_data.get("product")
        ]
        with tenant_scope(customer.tenant):
            return services.order_create(
                tenant=customer.tenant,
                customer=customer,
                items=items,
                currency=data.get("currency") or None,
                notes=data.get("notes") or "",
            )

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, f"Order placed for {obj.customer.name}: accept it to invoice it.")
        return HttpResponseRedirect(reverse("admin:orders_order_change", args=[obj.pk]))

    def accept_one(self, request, order, data):
        order = services.order_accept(order=order)
        return f"Accepted: invoice {order.invoice or '(nothing to invoice)'}."

    def cancel_one(self, request, order, data):
        services.order_cancel(order=order)
        return "Order cancelled."
