from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from apps.common.admin import AuditedModelAdmin, ReadOnlyAdmin, ReadOnlyInline, apply_each, confirm_first
from apps.common.exceptions import DomainError
from apps.tenancy.scoping import tenant_scope

from .models import (
    BillingSettings,
    CheckoutSession,
    CreditNote,
    CreditNoteLine,
    CreditTransaction,
    DunningNotice,
    Invoice,
    InvoiceLine,
    NumberSequence,
    Payment,
    PaymentMethod,
    Subscription,
    SubscriptionCharge,
    UsageRecord,
    WebhookEvent,
)
from .services import invoices, payments, subscriptions


class RecordPaymentForm(forms.Form):
    """Money an operator received by hand: the methods that are not a provider's own (those come by webhook)."""

    amount = forms.DecimalField(max_digits=14, decimal_places=4, min_value=Decimal("0.0001"))
    method = forms.ChoiceField(
        choices=[(m.value, m.label) for m in (PaymentMethod.BANK_TRANSFER, PaymentMethod.CASH, PaymentMethod.CHEQUE)]
    )
    reference = forms.CharField(max_length=200, required=False, help_text="e.g. the bank transfer's reference")


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = readonly_fields = [
        "description", "quantity", "unit_price", "discount", "tax_rate", "period_start", "period_end", "amount",
        "tax_amount", "total",
    ]  # fmt: skip


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = readonly_fields = ["received_at", "amount", "method", "status", "reference", "refunded_amount"]


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    """Invoices change only through the billing services (the API or these actions)."""

    list_display = ["__str__", "customer", "status", "total", "amount_due", "currency", "due_date", "tenant"]
    list_filter = ["status", "currency", "issue_date", "tenant"]
    search_fields = ["number", "customer__name", "customer__email", "id"]
    list_select_related = ["customer", "tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [InvoiceLineInline, PaymentInline]
    actions = ["issue", "void", "mark_uncollectible"]
    readonly_fields = ["record_payment_link"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def _run(self, request, queryset, service, verb):
        def one(invoice):
            with tenant_scope(invoice.tenant):
                service(invoice=invoice)

        apply_each(self, request, queryset, one, verb)

    def get_urls(self):
        record = self.admin_site.admin_view(self.record_payment_view)
        return [path("<uuid:pk>/record-payment/", record, name="billing_invoice_record_payment"), *super().get_urls()]

    def record_payment_view(self, request, pk):
        """Record a payment on one invoice through ``payments.payment_record``, as the API does."""
        if not self.has_operate_permission(request):
            raise PermissionDenied
        invoice = get_object_or_404(Invoice.all_tenants.select_related("customer", "tenant"), pk=pk)
        form = RecordPaymentForm(request.POST or None, initial={"amount": invoice.amount_due})
        if request.method == "POST" and form.is_valid():
            try:
                with tenant_scope(invoice.tenant):
                    payments.payment_record(invoice=invoice, actor=request.user, **form.cleaned_data)
            except DomainError as exc:
                form.add_error(getattr(exc, "field", None) if getattr(exc, "field", None) in form.fields else None,
                               exc.message)  # fmt: skip
            else:
                self.message_user(request, f"Recorded {form.cleaned_data['amount']} {invoice.currency} on {invoice}.",
                                  messages.SUCCESS)  # fmt: skip
                return redirect(reverse("admin:billing_invoice_change", args=[invoice.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Record a payment on {invoice}",
            "opts": self.opts,
            "invoice": invoice,
            "form": form,
        }
        return TemplateResponse(request, "admin/billing/invoice/record_payment.html", context)

    @admin.display(description="Payment")
    def record_payment_link(self, obj):
        if obj.status not in ("open", "uncollectible"):
            return "—"
        url = reverse("admin:billing_invoice_record_payment", args=[obj.pk])
        return format_html('<a class="button" href="{}">Record a payment</a>', url)

    @admin.action(description="Issue the selected drafts", permissions=["operate"])
    def issue(self, request, queryset):
        self._run(request, queryset, invoices.invoice_issue, "Issued")

    @admin.action(description="Void the selected open invoices", permissions=["operate"])
    @confirm_first
    def void(self, request, queryset):
        self._run(request, queryset, invoices.invoice_void, "Voided")

    @admin.action(description="Mark the selected open invoices uncollectible", permissions=["operate"])
    @confirm_first
    def mark_uncollectible(self, request, queryset):
        self._run(request, queryset, invoices.invoice_mark_uncollectible, "Marked uncollectible")


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "invoice", "amount", "currency", "method", "status", "reference", "tenant"]
    list_filter = ["method", "status", "currency", "tenant"]
    search_fields = ["reference", "provider_ref", "invoice__number"]
    list_select_related = ["invoice", "tenant"]
    date_hierarchy = "received_at"
    show_full_result_count = False


class CreditNoteLineInline(ReadOnlyInline):
    model = CreditNoteLine
    fields = readonly_fields = ["description", "amount", "tax_amount", "total"]


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    list_display = ["number", "invoice", "total", "currency", "issued_at", "tenant"]
    list_filter = ["currency", "tenant"]
    search_fields = ["number", "invoice__number", "reason"]
    list_select_related = ["invoice", "tenant"]
    inlines = [CreditNoteLineInline]


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "customer", "amount", "currency", "kind", "tenant"]
    list_filter = ["kind", "currency", "tenant"]
    search_fields = ["customer__name", "customer__email", "description"]
    list_select_related = ["customer", "tenant"]


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "provider", "type", "event_id", "status", "attempts", "tenant"]
    list_filter = ["provider", "status", "type", "tenant"]
    search_fields = ["event_id", "type", "error"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(BillingSettings)
class BillingSettingsAdmin(AuditedModelAdmin):
    list_display = ["tenant", "invoice_number_format", "credit_note_number_format", "payment_terms_days"]
    search_fields = ["tenant__name"]
    list_select_related = ["tenant"]
    list_filter = ["payment_terms_days"]


@admin.register(NumberSequence)
class NumberSequenceAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "series", "period", "last"]
    list_filter = ["series", "tenant"]
    search_fields = ["tenant__name"]
    list_select_related = ["tenant"]


class SubscriptionChargeInline(ReadOnlyInline):
    model = SubscriptionCharge
    fields = readonly_fields = ["kind", "period_start", "period_end", "amount", "description", "invoice_line"]


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """Subscriptions change through the billing services: these actions or the API."""

    list_display = ["__str__", "customer", "product", "status", "cycle", "current_period_end", "tenant"]
    list_filter = ["status", "cycle", "currency", "suspension_reason", "tenant"]
    search_fields = ["customer__name", "customer__email", "product__name", "external_ref", "id"]
    list_select_related = ["customer", "product", "tenant"]
    show_full_result_count = False
    inlines = [SubscriptionChargeInline]
    actions = ["suspend", "resume", "cancel_now"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def _run(self, request, queryset, service, verb):
        def one(sub):
            with tenant_scope(sub.tenant):
                service(sub=sub, actor=request.user)

        apply_each(self, request, queryset, one, verb)

    @admin.action(description="Suspend the selected subscriptions (staff suspension)", permissions=["operate"])
    def suspend(self, request, queryset):
        self._run(request, queryset, subscriptions.subscription_suspend, "Suspended")

    @admin.action(description="Resume the selected subscriptions", permissions=["operate"])
    def resume(self, request, queryset):
        self._run(request, queryset, subscriptions.subscription_resume, "Resumed")

    @admin.action(description="Cancel the selected subscriptions now", permissions=["operate"])
    @confirm_first
    def cancel_now(self, request, queryset):
        self._run(request, queryset, subscriptions.subscription_cancel, "Cancelled")


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "subscription", "quantity", "idempotency_key", "charge", "tenant"]
    list_filter = ["tenant"]
    search_fields = ["idempotency_key", "subscription__id"]
    list_select_related = ["subscription", "charge", "tenant"]


@admin.register(SubscriptionCharge)
class SubscriptionChargeAdmin(ReadOnlyAdmin):
    list_display = ["subscription", "kind", "period_start", "period_end", "amount", "invoice_line", "tenant"]
    list_filter = ["kind", "tenant"]
    search_fields = ["description", "subscription__id"]
    list_select_related = ["subscription", "invoice_line", "tenant"]


@admin.register(DunningNotice)
class DunningNoticeAdmin(ReadOnlyAdmin):
    list_display = ["invoice", "step", "taken_on", "tenant"]
    list_filter = ["step", "tenant"]
    search_fields = ["invoice__number"]
    list_select_related = ["invoice", "tenant"]


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "invoice", "provider", "session_id", "amount", "currency", "status", "tenant"]
    list_filter = ["provider", "status", "tenant"]
    search_fields = ["session_id", "invoice__number"]
    list_select_related = ["invoice", "tenant"]
