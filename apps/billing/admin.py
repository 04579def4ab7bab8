from datetime import datetime, time
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.http import HttpResponse
from django.urls import path
from django.utils import timezone

from apps.audit.admin_base import AuditedModelAdmin
from apps.common.admin import ObjectAction, ReadOnlyAdmin, ReadOnlyInline, apply_each, confirm_first
from apps.common.display import money, when
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
    InvoiceStatus,
    NumberSequence,
    Payment,
    PaymentMethod,
    Subscription,
    SubscriptionCharge,
    UsageRecord,
    WebhookEvent,
)
from .services import documents, invoices, payments, subscriptions


class RecordPaymentForm(forms.Form):
    """Money an operator received by hand: the methods that are not a provider's own (those come by webhook)."""

    amount = forms.DecimalField(max_digits=14, decimal_places=4, min_value=Decimal("0.0001"))
    method = forms.ChoiceField(
        choices=[(m.value, m.label) for m in (PaymentMethod.BANK_TRANSFER, PaymentMethod.CASH, PaymentMethod.CHEQUE)]
    )
    reference = forms.CharField(max_length=200, required=False, help_text="e.g. the bank transfer's reference")
    received_on = forms.DateField(required=False, help_text="The day the money arrived (default: today).",
                                  widget=forms.DateInput(attrs={"type": "date"}))  # fmt: skip


class BillingAdmin(ReadOnlyAdmin):
    """Billing objects change only through the billing services (the API or these buttons and actions),
    each in its tenant's scope."""

    def object_action_scope(self, obj):
        return tenant_scope(obj.tenant)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = readonly_fields = [
        "description", "quantity", "unit_price", "discount", "tax_rate", "period_start", "period_end", "amount",
        "tax_amount", "total",
    ]  # fmt: skip


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = readonly_fields = ["received_at", "amount", "method", "status", "reference", "refunded_amount"]


def _open(invoice) -> bool:
    return invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)


@admin.register(Invoice)
class InvoiceAdmin(BillingAdmin):
    """Invoices change only through the billing services (the API, these buttons or list actions)."""

    list_display = ["__str__", "customer", "status", "total", "amount_due", "currency", "due_date", "tenant"]
    list_filter = ["status", "currency", "issue_date", "tenant"]
    search_fields = ["number", "customer__name", "customer__email", "id"]
    list_select_related = ["customer", "tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [InvoiceLineInline, PaymentInline]
    actions = ["issue", "void", "mark_uncollectible"]
    object_actions = [
        ObjectAction("issue", "Issue", method="issue_one", show=lambda i: i.status == InvoiceStatus.DRAFT,
                     help="Number the draft, open it, apply the customer's credit and e-mail it with its PDF."),
        ObjectAction("send", "Send by e-mail", method="send_one",
                     show=lambda i: i.status not in (InvoiceStatus.DRAFT, InvoiceStatus.VOID)),
        ObjectAction("pdf", "Download PDF", method="pdf_one", http_method="get", permission=lambda r, i: True),
        ObjectAction("record_payment", "Record a payment", method="record_payment_one", form=RecordPaymentForm,
                     initial=lambda i: {"amount": i.amount_due}, show=_open, permission="billing.add_payment",
                     help="Money received by bank transfer, cash or cheque; any excess becomes the customer's credit."),
        ObjectAction("void", "Void", method="void_one", confirm=True, style="danger", show=_open,
                     help="A void invoice is owed no more; the credit it used goes back to the customer."),
        ObjectAction("mark_uncollectible", "Mark uncollectible", method="uncollectible_one", confirm=True,
                     style="danger", show=lambda i: i.status == InvoiceStatus.OPEN),
    ]  # fmt: skip

    def get_urls(self):
        # The payment form's earlier name, kept: the same URL as the button's.
        def record(request, object_id):
            return self.object_action_view(request, object_id, "record_payment")

        view = self.admin_site.admin_view(record)
        return [path("<path:object_id>/do/record_payment/", view, name="billing_invoice_record_payment"),
                *super().get_urls()]  # fmt: skip

    def _run(self, request, queryset, service, verb):
        def one(invoice):
            with tenant_scope(invoice.tenant):
                service(invoice=invoice)

        apply_each(self, request, queryset, one, verb)

    # -- buttons on an invoice's page (apps.common.admin.ObjectAction) --

    def issue_one(self, request, invoice, data):
        invoice = invoices.invoice_issue(invoice=invoice)
        return f"Issued {invoice.number}: {money(invoice.total, invoice.currency)}, due {when(invoice.due_date)}."

    def send_one(self, request, invoice, data):
        invoices.invoice_send(invoice=invoice, actor=request.user)
        return f"{invoice} is being sent to {invoice.customer.invoice_email}."

    def pdf_one(self, request, invoice, data):
        response = HttpResponse(documents.invoice_pdf(invoice), content_type="application/pdf")
        name = invoice.number or f"draft-{invoice.pk}"
        response["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
        return response

    def record_payment_one(self, request, invoice, data):
        received = data.get("received_on")
        at = timezone.make_aware(datetime.combine(received, time(12))) if received else None
        payments.payment_record(invoice=invoice, actor=request.user, amount=data["amount"], method=data["method"],
                                reference=data.get("reference") or "", received_at=at)  # fmt: skip
        return f"Recorded {money(data['amount'], invoice.currency)} on {invoice}."

    def void_one(self, request, invoice, data):
        invoices.invoice_void(invoice=invoice)
        return f"Voided {invoice}."

    def uncollectible_one(self, request, invoice, data):
        invoices.invoice_mark_uncollectible(invoice=invoice)
        return f"{invoice} is marked uncollectible."

    # -- list actions --

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
