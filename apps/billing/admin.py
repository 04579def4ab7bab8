import uuid
from datetime import datetime, time
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from apps.catalog.models import Cycle, Product
from apps.common.admin import (
    ConsoleModelAdmin,
    ObjectAction,
    ReadOnlyAdmin,
    ReadOnlyInline,
    ServiceFormMixin,
    amount_column,
    apply_each,
    confirm_first,
    link,
    status_column,
    time_column,
)
from apps.common.display import badge, money, when
from apps.common.money import CURRENCY_CHOICES, quantize
from apps.customers.models import Customer
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
    StripeConnection,
    Subscription,
    SubscriptionCharge,
    SubscriptionStatus,
    UsageRecord,
    WebhookEvent,
)
from .periods import RECURRING_CYCLES
from .services import (
    connect,
    credit_notes,
    documents,
    invoices,
    payments,
    subscriptions,
    tenant_settings,
    webhook_secrets,
)
from .services.credit_notes import CREDITABLE


class RecordPaymentForm(forms.Form):
    """Money an operator received by hand: the methods that are not a provider's own (those come by webhook)."""

    amount = forms.DecimalField(max_digits=14, decimal_places=4, min_value=Decimal("0.0001"))
    method = forms.ChoiceField(
        choices=[(m.value, m.label) for m in (PaymentMethod.BANK_TRANSFER, PaymentMethod.CASH, PaymentMethod.CHEQUE)]
    )
    reference = forms.CharField(max_length=200, required=False, help_text="e.g. the bank transfer's reference")
    received_on = forms.DateField(
        required=False,
        help_text="The day the money arrived (default: today).",
        widget=forms.DateInput(attrs={"type": "date"}),
    )


class CreditNoteForm(forms.Form):
    """A credit note on an issued invoice: all that is left, or a part (net of tax) of one line."""

    line = forms.ChoiceField(
        required=False, label="Line", help_text="Leave empty to credit everything that is left on the invoice."
    )
    amount = forms.DecimalField(
        required=False,
        max_digits=14,
        decimal_places=4,
        min_value=Decimal("0.0001"),
        help_text="Net of tax, for the chosen line; tax is credited in proportion.",
    )
    reason = forms.CharField(max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, invoice=None, **kwargs):
        super().__init__(*args, **kwargs)
        if invoice is not None:
            self.fields["line"].choices = [
                ("", "Everything left"),
                *(
                    (str(line.pk), f"{line.description} ({money(line.amount - line.discount, invoice.currency)})")
                    for line in invoice.lines.all()
                ),
            ]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("line") and not cleaned.get("amount"):
            self.add_error("amount", "Say how much of this line to credit.")
        if cleaned.get("amount") and not cleaned.get("line"):
            self.add_error("line", "Choose the line the amount credits.")
        return cleaned


def _credit_note_form(invoice):
    """The credit note form, bound to the invoice's lines."""

    class Form(CreditNoteForm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, invoice=invoice, **kwargs)

    return Form


class BillingAdmin(ReadOnlyAdmin):
    """Billing objects change only through the billing services (the API or these buttons and actions),
    each in its tenant's scope."""

    def object_action_scope(self, obj):
        return tenant_scope(obj.tenant)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


def subscription_title(sub) -> str:
    """A subscription as operators name it: its customer and product (not a product UUID)."""
    qty = f" x{sub.quantity}" if sub.quantity != 1 else ""
    return f"{sub.customer.name} · {sub.product.name}{qty}"


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = readonly_fields = [
        "description",
        "qty",
        "unit_price_money",
        "discount_money",
        "tax_percent",
        "period",
        "amount_money",
        "tax_money",
        "total_money",
    ]

    unit_price_money = amount_column("unit_price", "Unit price", "invoice.currency")
    discount_money = amount_column("discount", "Discount", "invoice.currency")
    amount_money = amount_column("amount", "Amount", "invoice.currency")
    tax_money = amount_column("tax_amount", "Tax", "invoice.currency")
    total_money = amount_column("total", "Total", "invoice.currency")

    @admin.display(description="Tax rate")
    def tax_percent(self, line):
        return f"{line.tax_rate.normalize():f}%" if line.tax_rate else "—"

    @admin.display(description="Quantity")
    def qty(self, line):
        return f"{line.quantity.normalize():f}"

    @admin.display(description="Period")
    def period(self, line):
        if not line.period_start:
            return "—"
        return f"{when(line.period_start)} to {when(line.period_end)}"


class InvoiceLineForm(forms.ModelForm):
    class Meta:
        model = InvoiceLine
        fields = ["description", "quantity", "unit_price", "discount", "tax_rate", "period_start", "period_end"]
        widgets = {"description": forms.TextInput(attrs={"size": 40})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("discount", "tax_rate"):  # empty is none (the service's default)
            self.fields[name].required = False
        self.fields["quantity"].initial = 1
        line = self.instance
        if line.pk is not None and line.unit_price is not None:  # 450.00 on a draft's page, not 450.0000
            shown = quantize(line.unit_price, line.invoice.currency)
            if shown == line.unit_price:  # never rounds a finer price away
                self.initial["unit_price"] = shown


class DraftLineInline(admin.TabularInline):
    """A draft's lines, edited on its page; saved by ``invoices.invoice_create/update_draft`` (the
    admin computes nothing: amounts, tax and totals are the service's)."""

    model = InvoiceLine
    form = InvoiceLineForm
    extra = 2
    verbose_name = "line"

    def get_extra(self, request, obj=None, **kwargs):
        return 2 if obj is None else 1

    def _may(self, request, obj) -> bool:
        if obj is None:
            return request.user.has_perm("billing.add_invoice")
        return obj.status == InvoiceStatus.DRAFT and request.user.has_perm("billing.change_invoice")

    def has_add_permission(self, request, obj=None):
        return self._may(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._may(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._may(request, obj)

    def has_view_permission(self, request, obj=None):
        return True


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = readonly_fields = ["received", "amount_money", "method", "status_badge", "reference", "refunded_money"]
    received = time_column("received_at", "Received")
    amount_money = amount_column("amount", "Amount")
    refunded_money = amount_column("refunded_amount", "Refunded")
    status_badge = status_column()


class CreditNoteInline(ReadOnlyInline):
    model = CreditNote
    fields = readonly_fields = ["note", "issued", "total_money", "reason"]
    verbose_name_plural = "credit notes"
    issued = time_column("issued_at", "Issued")
    total_money = amount_column("total", "Total")

    @admin.display(description="Credit note")
    def note(self, obj):
        return link(obj)


class DunningInline(ReadOnlyInline):
    model = DunningNotice
    fields = readonly_fields = ["step_words", "taken_on"]
    verbose_name_plural = "dunning steps taken"

    @admin.display(description="Step")
    def step_words(self, obj):
        return dunning_step(obj.step)


def dunning_step(step: str) -> str:
    """A dunning step in words: "before:3" → "Reminder 3 days before the due date"."""
    kind, _, days = step.partition(":")
    if kind == "before" and days:
        return f"Reminder {days} day{'s' if days != '1' else ''} before the due date"
    if kind == "after" and days:
        return f"Reminder {days} day{'s' if days != '1' else ''} after the due date"
    return {"suspend": "Services suspended", "terminate": "Services terminated", "due": "Reminder on the due date"}.get(
        step, step.replace("_", " ").capitalize()
    )


def _open(invoice) -> bool:
    return invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)


class InvoiceForm(forms.ModelForm):
    currency = forms.ChoiceField(
        choices=[("", "The customer's currency"), *((c, c) for c in CURRENCY_CHOICES)], required=False
    )

    class Meta:
        model = Invoice
        fields = ["customer", "currency", "due_date", "notes"]
        help_texts = {"due_date": "Empty: the tenant's payment terms from the day it is issued."}


@admin.register(Invoice)
class InvoiceAdmin(ServiceFormMixin, BillingAdmin):
    """Invoices change only through the billing services (the API, these pages, buttons or list actions).

    A draft is created and edited here with its lines (``invoice_create/update_draft``); once issued,
    it changes only by payments, credit notes and voiding (buttons on its page)."""

    form = InvoiceForm
    list_display = ["__str__", "customer", "status", "total_money", "amount_due_money", "due", "tenant"]
    list_filter = ["status", "currency", "issue_date", "tenant"]
    search_fields = ["number", "customer__name", "customer__email", "id"]
    list_select_related = ["customer", "tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    autocomplete_fields = ["customer"]
    actions = ["issue", "void", "mark_uncollectible"]
    object_actions = [
        ObjectAction(
            "issue",
            "Issue",
            method="issue_one",
            show=lambda i: i.status == InvoiceStatus.DRAFT,
            help="Number the draft, open it, apply the customer's credit and e-mail it with its PDF.",
        ),
        ObjectAction(
            "send",
            "Send by e-mail",
            method="send_one",
            show=lambda i: i.status not in (InvoiceStatus.DRAFT, InvoiceStatus.VOID),
        ),
        ObjectAction("pdf", "Download PDF", method="pdf_one", http_method="get", permission=lambda r, i: True),
        ObjectAction(
            "record_payment",
            "Record a payment",
            method="record_payment_one",
            form=RecordPaymentForm,
            initial=lambda i: {"amount": quantize(i.amount_due, i.currency)},  # 499.50, not 499.5000
            show=_open,
            permission="billing.add_payment",
            help="Money received by bank transfer, cash or cheque; any excess becomes the customer's credit.",
        ),
        ObjectAction(
            "credit_note",
            "Credit note",
            method="credit_note_one",
            form=CreditNoteForm,
            permission="billing.add_creditnote",
            show=lambda i: i.status in CREDITABLE,
            help="Credit all that is left on the invoice, or part of one line. What the invoice no "
            "longer owes becomes the customer's credit.",
        ),
        ObjectAction(
            "void",
            "Void",
            method="void_one",
            confirm=True,
            style="danger",
            show=_open,
            help="A void invoice is owed no more; the credit it used goes back to the customer.",
        ),
        ObjectAction(
            "mark_uncollectible",
            "Mark uncollectible",
            method="uncollectible_one",
            confirm=True,
            style="danger",
            show=lambda i: i.status == InvoiceStatus.OPEN,
        ),
        ObjectAction(
            "delete_draft",
            "Delete draft",
            method="delete_draft_one",
            confirm=True,
            style="danger",
            show=lambda i: i.status == InvoiceStatus.DRAFT,
        ),
    ]

    status_badge = status_column()
    status = status_column()  # the list column keeps its name (field-status)
    total_money = amount_column("total", "Total")
    amount_due_money = amount_column("amount_due", "Due")
    due = time_column("due_date", "Due date")

    # -- the page: a draft's form and lines, or an issued invoice's read-only summary --

    def has_add_permission(self, request):
        return admin.ModelAdmin.has_add_permission(self, request)

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.status != InvoiceStatus.DRAFT:
            return False
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def get_inlines(self, request, obj):
        if obj is None or obj.status == InvoiceStatus.DRAFT:
            return [DraftLineInline]
        return [InvoiceLineInline, PaymentInline, CreditNoteInline, DunningInline]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["customer", "currency", "due_date", "notes"]
        if obj.status == InvoiceStatus.DRAFT:
            return ["customer_link", "status_badge", "currency", "due_date", "notes", "figures"]
        return [
            "number",
            "customer_link",
            "status_badge",
            "issue_date",
            "due_date",
            "figures",
            "bill_to",
            "issued",
            "paid",
            "voided",
            "notes",
            "tenant",
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        if obj.status == InvoiceStatus.DRAFT:
            return ["customer_link", "status_badge", "figures"]
        return self.get_fields(request, obj)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("customer", "tenant")

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        customer = initial.get("customer")
        if customer and not initial.get("currency"):  # "Create an invoice" on a customer's page
            currency = Customer.all_tenants.filter(pk=customer).values_list("currency", flat=True).first()
            if currency:
                initial["currency"] = currency
        return initial

    @admin.display(description="Customer")
    def customer_link(self, obj):
        return link(obj.customer, obj.customer.name)

    issued = time_column("issued_at", "Issued")
    paid = time_column("paid_at", "Paid")
    voided = time_column("voided_at", "Voided")

    @admin.display(description="Amounts")
    def figures(self, obj):
        cur = obj.currency
        rows = [
            ("Subtotal", obj.subtotal),
            ("Discounts", -obj.discount_total if obj.discount_total else None),
            ("Tax", obj.tax_total),
            ("Total", obj.total),
            ("Credit applied", -obj.credit_applied if obj.credit_applied else None),
            ("Credit notes", -obj.amount_credited if obj.amount_credited else None),
            ("Paid", -obj.amount_paid if obj.amount_paid else None),
            ("Amount due", obj.amount_due),
        ]
        body = format_html_join(
            "",
            "<tr><th>{}</th><td class='money'>{}</td></tr>",
            ((label, money(value, cur)) for label, value in rows if value is not None),
        )
        return format_html('<table class="invoice-figures">{}</table>', body)

    @admin.display(description="Billed to")
    def bill_to(self, obj):
        details = obj.billing_details or {}
        if not details:
            return "—"
        parts = [
            details.get("name"),
            details.get("company"),
            details.get("email"),
            *(line for line in details.get("address") or [] if line),
        ]
        if details.get("tax_id"):
            parts.append(f"Tax ID {details['tax_id']}")
        return format_html_join(mark_safe("<br>"), "{}", ((p,) for p in parts if p))

    def service_save(self, request, form, formsets, change):
        data = form.cleaned_data
        lines = [
            {k: f.cleaned_data.get(k) for k in InvoiceLineForm.Meta.fields}
            for formset in formsets
            for f in formset.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]
        for line in lines:
            line["quantity"] = line["quantity"] if line["quantity"] is not None else 1
            line["discount"] = line["discount"] or 0
            line["tax_rate"] = line["tax_rate"] or 0
        if not change:
            customer = data["customer"]
            with tenant_scope(customer.tenant):
                return invoices.invoice_create(
                    tenant=customer.tenant,
                    customer=customer,
                    lines=lines,
                    currency=data.get("currency") or None,
                    due_date=data.get("due_date"),
                    notes=data.get("notes") or "",
                    by_hand=True,
                )
        invoice = Invoice.all_tenants.get(pk=form.instance.pk)
        with tenant_scope(invoice.tenant):
            return invoices.invoice_update_draft(
                invoice=invoice,
                data={
                    "currency": data.get("currency") or invoice.customer.currency,
                    "due_date": data.get("due_date"),
                    "notes": data.get("notes") or "",
                    "lines": lines,
                },
            )

    # -- buttons on an invoice's page (apps.common.admin.ObjectAction) --

    def get_urls(self):
        # The payment form's earlier name, kept: the same URL as the button's.
        def record(request, object_id):
            return self.object_action_view(request, object_id, "record_payment")

        view = self.admin_site.admin_view(record)
        return [
            path("<path:object_id>/do/record_payment/", view, name="billing_invoice_record_payment"),
            *super().get_urls(),
        ]

    def get_object_action_form(self, request, action, obj):
        if action.name == "credit_note":  # its form lists this invoice's lines
            return _credit_note_form(obj)
        return super().get_object_action_form(request, action, obj)

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
        payments.payment_record(
            invoice=invoice,
            actor=request.user,
            amount=data["amount"],
            method=data["method"],
            reference=data.get("reference") or "",
            received_at=at,
        )
        return f"Recorded {money(data['amount'], invoice.currency)} on {invoice}."

    def credit_note_one(self, request, invoice, data):
        lines = None
        if data.get("line"):
            lines = [{"invoice_line": uuid.UUID(data["line"]), "amount": data["amount"]}]
        note = credit_notes.credit_note_create(invoice=invoice, lines=lines, reason=data.get("reason") or "")
        return format_html("Credit note {} issued: {}.", link(note), money(note.total, note.currency))

    def void_one(self, request, invoice, data):
        invoices.invoice_void(invoice=invoice)
        return f"Voided {invoice}."

    def uncollectible_one(self, request, invoice, data):
        invoices.invoice_mark_uncollectible(invoice=invoice)
        return f"{invoice} is marked uncollectible."

    def delete_draft_one(self, request, invoice, data):
        invoices.invoice_delete_draft(invoice=invoice)
        self.message_user(request, f"The draft {invoice} is deleted.")
        return HttpResponseRedirect(reverse("admin:billing_invoice_changelist"))

    # -- list actions --

    def _run(self, request, queryset, service, verb):
        def one(invoice):
            with tenant_scope(invoice.tenant):
                service(invoice=invoice)

        apply_each(self, request, queryset, one, verb)

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
class PaymentAdmin(BillingAdmin):
    list_display = ["received", "invoice", "amount_money", "method", "status", "reference", "tenant"]
    received = time_column("received_at", "Received")
    amount_money = amount_column("amount", "Amount")
    status_badge = status_column()
    status = status_column()  # the list column keeps its name (field-status)
    list_filter = ["method", "status", "currency", "tenant"]
    search_fields = ["reference", "provider_ref", "invoice__number"]
    list_select_related = ["invoice", "tenant"]
    date_hierarchy = "received_at"
    show_full_result_count = False


class CreditNoteLineInline(ReadOnlyInline):
    model = CreditNoteLine
    fields = readonly_fields = ["description", "amount_money", "tax_money", "total_money"]
    amount_money = amount_column("amount", "Amount", "credit_note.currency")
    tax_money = amount_column("tax_amount", "Tax", "credit_note.currency")
    total_money = amount_column("total", "Total", "credit_note.currency")


@admin.register(CreditNote)
class CreditNoteAdmin(BillingAdmin):
    """Credit notes are issued from their invoice's page ("Credit note"); here they are read and printed."""

    list_display = ["number", "invoice", "customer", "total_money", "issued", "tenant"]
    list_filter = ["currency", "tenant"]
    search_fields = ["number", "invoice__number", "reason", "customer__name"]
    list_select_related = ["invoice", "customer", "tenant"]
    inlines = [CreditNoteLineInline]
    fields = readonly_fields = ["number", "invoice_link", "customer_link", "issued", "reason", "figures", "tenant"]
    object_actions = [
        ObjectAction("pdf", "Download PDF", method="pdf_one", http_method="get", permission=lambda r, n: True),
    ]
    total_money = amount_column("total", "Total")
    issued = time_column("issued_at", "Issued")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("invoice", "customer", "tenant")

    @admin.display(description="Invoice")
    def invoice_link(self, obj):
        return link(obj.invoice)

    @admin.display(description="Customer")
    def customer_link(self, obj):
        return link(obj.customer, obj.customer.name)

    @admin.display(description="Amounts")
    def figures(self, obj):
        cur = obj.currency
        rows = [
            ("Subtotal", obj.subtotal),
            ("Tax", obj.tax_total),
            ("Total", obj.total),
            ("Taken off the invoice", obj.applied_to_invoice),
            ("To the customer's credit", obj.credited_to_balance),
        ]
        body = format_html_join(
            "", "<tr><th>{}</th><td class='money'>{}</td></tr>", ((label, money(value, cur)) for label, value in rows)
        )
        return format_html("<table>{}</table>", body)

    def pdf_one(self, request, note, data):
        response = HttpResponse(documents.credit_note_pdf(note), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{note.number}.pdf"'
        return response


@admin.register(CreditTransaction)
class CreditTransactionAdmin(BillingAdmin):
    list_display = ["created", "customer", "amount_money", "kind", "description", "tenant"]
    created = time_column("created_at", "When")
    amount_money = amount_column("amount", "Amount")
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


class BillingSettingsForm(forms.ModelForm):
    """What ``tenant_settings.settings_update`` checks (a number format that cannot give unique numbers,
    cancellation before suspension): its refusal is shown on the field it names."""

    payment_methods = forms.MultipleChoiceField(
        choices=PaymentMethod.choices, widget=forms.CheckboxSelectMultiple,
        help_text="What customers are offered. Money that arrives by another way is still recorded.",
    )  # fmt: skip
    currencies = forms.MultipleChoiceField(
        choices=[(c, c) for c in CURRENCY_CHOICES], required=False,
        help_text="The currencies invoices are made in by hand; none chosen: any.",
    )  # fmt: skip
    reminder_days_before = forms.JSONField(required=False, help_text="Days before due, e.g. [3].")
    reminder_days_after = forms.JSONField(required=False, help_text="Days after due, e.g. [1, 7].")

    class Meta:
        model = BillingSettings
        fields = ["tenant", *tenant_settings.FIELDS]


class StripeConnectForm(forms.Form):
    account_type = forms.ChoiceField(choices=StripeConnection.AccountType.choices, initial="express")
    account_id = forms.RegexField(
        regex=r"^acct_[A-Za-z0-9]{1,64}$", required=False,
        help_text="An account the tenant already has and has connected to this platform; empty: a new one.",
    )  # fmt: skip
    email = forms.EmailField(required=False, help_text="The account holder's address (a new account).")
    country = forms.RegexField(regex=r"^[A-Z]{2}$", required=False, help_text="ISO 3166-1 alpha-2, e.g. NL.")


class PlatformFeeForm(forms.Form):
    platform_fee_percent = forms.DecimalField(
        min_value=Decimal(0), max_value=Decimal(50), decimal_places=2, label="Platform fee (%)",
        help_text="The platform's share of each card payment on the tenant's account (application_fee_amount).",
    )  # fmt: skip


def _stripe(settings_row) -> StripeConnection | None:
    return StripeConnection.objects.filter(tenant_id=settings_row.tenant_id).first()


def _stripe_live(settings_row) -> bool:
    connection = _stripe(settings_row)
    return connection is not None and connection.live


@admin.register(BillingSettings)
class BillingSettingsAdmin(ServiceFormMixin, ConsoleModelAdmin):
    """A tenant's billing settings, saved by ``tenant_settings.settings_update`` (the API's service,
    audited there), with the tenant's Stripe account and its generic webhook secrets on the page."""

    form = BillingSettingsForm
    list_display = ["tenant", "invoice_number_format", "credit_note_number_format", "payment_terms_days", "stripe"]
    search_fields = ["tenant__name"]
    list_select_related = ["tenant"]
    list_filter = ["payment_terms_days"]
    readonly_fields = ["stripe_account", "webhook_secrets"]
    object_actions = [
        ObjectAction(
            "connect_stripe",
            "Connect Stripe",
            method="connect_stripe_one",
            form=StripeConnectForm,
            help="Connect the tenant's own Stripe account (a new Express or Standard one, or one it has): "
            "its customers' card payments go there. Answers Stripe's onboarding link for the tenant's owner "
            "(valid a few minutes; ask again for a fresh one).",
        ),
        ObjectAction(
            "platform_fee",
            "Platform fee",
            method="platform_fee_one",
            form=PlatformFeeForm,
            initial=lambda row: {"platform_fee_percent": getattr(_stripe(row), "platform_fee_percent", 0)},
            show=_stripe_live,
            help="Only operators set it; tenants see it in GET /billing/stripe/connect.",
        ),
        ObjectAction(
            "disconnect_stripe",
            "Disconnect Stripe",
            method="disconnect_stripe_one",
            confirm=True,
            style="danger",
            show=_stripe_live,
            help="Card payments stop until an account is connected again; payments made stay refundable there.",
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        # The tenant of existing settings is fixed; a new row names its tenant.
        return [*self.readonly_fields, "tenant"] if obj is not None else []

    def get_fields(self, request, obj=None):
        fields = list(self.form.Meta.fields)
        return [*fields, "stripe_account", "webhook_secrets"] if obj is not None else fields

    def object_action_scope(self, obj):
        return tenant_scope(obj.tenant)

    @admin.display(description="Stripe")
    def stripe(self, obj):
        connection = _stripe(obj)
        return badge(connection.status if connection else "none")

    @admin.display(description="Stripe account")
    def stripe_account(self, obj):
        connection = _stripe(obj)
        if connection is None:
            return "None connected: the tenant takes manual payments."
        due = ", ".join(connection.requirements_due[:5]) or "nothing"
        return format_html(
            "{} {} ({}) · charges {} · payouts {} · details {} · Stripe still asks for: {} · platform fee {} %",
            badge(connection.status), connection.account_id, connection.get_account_type_display(),
            _yes(connection.charges_enabled), _yes(connection.payouts_enabled), _yes(connection.details_submitted),
            due, connection.platform_fee_percent,
        )  # fmt: skip

    @admin.display(description="Generic webhook secrets")
    def webhook_secrets(self, obj):
        rows = webhook_secrets.valid(obj.tenant_id).order_by("-created_at")
        if not rows:
            return "None: the tenant's members rotate one in (POST /billing/settings/webhook-secrets)."
        return format_html_join(
            ", ", "{}… made {}{}",
            ((r.prefix, when(r.created_at), f", valid until {when(r.expires_at)}" if r.expires_at else "")
             for r in rows),
        )  # fmt: skip

    def service_save(self, request, form, formsets, change):
        data = {name: form.cleaned_data[name] for name in tenant_settings.FIELDS if name in form.cleaned_data}
        for name in ("reminder_days_before", "reminder_days_after"):
            data[name] = data.get(name) or []
        tenant = form.instance.tenant if change else form.cleaned_data["tenant"]
        with tenant_scope(tenant):
            return tenant_settings.settings_update(tenant=tenant, data=data, actor=request.user)

    # -- buttons --

    def connect_stripe_one(self, request, row, data):
        back = request.build_absolute_uri(reverse("admin:billing_billingsettings_change", args=[row.pk]))
        connection, link = connect.connect_start(
            tenant=row.tenant, actor=request.user, account_type=data["account_type"],
            account_id=data.get("account_id") or "", email=data.get("email") or "", country=data.get("country") or "",
            return_url=back, refresh_url=back,
        )  # fmt: skip
        return format_html(
            '{}: {} connected ({}). Stripe\'s onboarding for the tenant\'s owner: <a href="{}">{}</a>',
            row.tenant, connection.account_id, connection.status, link["url"], link["url"],
        )  # fmt: skip

    def platform_fee_one(self, request, row, data):
        connection = _stripe(row)
        if connection is None:
            return "No Stripe account is connected."
        connect.connect_set_fee(connection=connection, percent=data["platform_fee_percent"], actor=request.user)
        return f"{row.tenant}: platform fee {data['platform_fee_percent']} %."

    def disconnect_stripe_one(self, request, row, data):
        connect.connect_disconnect(tenant=row.tenant, actor=request.user, reason="by an operator")
        return f"{row.tenant}: Stripe disconnected; its customers pay by manual methods."


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@admin.register(NumberSequence)
class NumberSequenceAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "series", "period", "last"]
    list_filter = ["series", "tenant"]
    search_fields = ["tenant__name"]
    list_select_related = ["tenant"]


class SubscriptionChargeInline(ReadOnlyInline):
    model = SubscriptionCharge
    fields = readonly_fields = ["kind", "period_start", "period_end", "amount_money", "description", "invoice_line"]
    amount_money = amount_column("amount", "Amount", "subscription.currency")


CYCLE_CHOICES = [(c, Cycle(c).label) for c in RECURRING_CYCLES]


class SubscriptionAddForm(forms.ModelForm):
    """A new subscription: ``subscriptions.subscription_create`` prices it from the catalog."""

    cycle = forms.ChoiceField(choices=CYCLE_CHOICES, initial="monthly")
    currency = forms.ChoiceField(
        choices=[("", "The customer's currency"), *((c, c) for c in CURRENCY_CHOICES)], required=False
    )
    quantity = forms.IntegerField(min_value=1, initial=1)
    bill_now = forms.BooleanField(
        required=False,
        initial=True,
        label="Invoice the first period now",
        help_text="Issue its first invoice (period and setup fee) at once; paying it activates the subscription.",
    )

    class Meta:
        model = Subscription
        fields = ["customer", "product", "cycle", "currency", "quantity"]

    def clean(self):
        cleaned = super().clean()
        customer, product = cleaned.get("customer"), cleaned.get("product")
        if customer and product and customer.tenant_id != product.tenant_id:
            self.add_error("product", "This product belongs to another tenant than the customer.")
        return cleaned


class ChangePlanForm(forms.Form):
    product = forms.ModelChoiceField(queryset=Product.all_tenants.none(), help_text="The new product (plan).")
    quantity = forms.IntegerField(min_value=1)


def _change_plan_form(sub):
    class Form(ChangePlanForm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Only the subscription's tenant's products, orderable or the current one.
            self.fields["product"].queryset = Product.all_tenants.filter(tenant_id=sub.tenant_id).order_by("name")

    return Form


class CancelForm(forms.Form):
    when = forms.ChoiceField(
        choices=[
            ("period_end", "At the end of the current period (no refund, service until then)"),
            ("now", "Now: end the service today"),
        ],
        widget=forms.RadioSelect,
        initial="period_end",
        label="Cancel",
    )


def _live(sub) -> bool:
    return sub.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


@admin.register(Subscription)
class SubscriptionAdmin(ServiceFormMixin, BillingAdmin):
    """Subscriptions change through the billing services: this add page, these buttons and actions, or the API.

    A change of plan or quantity shows its proration (``subscription_change_preview``, the figures the
    change applies) before it is applied."""

    form = SubscriptionAddForm
    list_display = ["title", "status", "cycle", "price", "period_end", "tenant"]
    list_filter = ["status", "cycle", "currency", "suspension_reason", "tenant"]
    search_fields = ["customer__name", "customer__email", "product__name", "external_ref", "id"]
    list_select_related = ["customer", "product", "tenant"]
    show_full_result_count = False
    autocomplete_fields = ["customer", "product"]
    actions = ["suspend", "resume", "cancel_now"]
    object_actions = [
        ObjectAction(
            "change_plan",
            "Change plan or quantity",
            method="change_plan_one",
            preview="change_plan_preview",
            initial=lambda s: {"product": s.product_id, "quantity": s.quantity},
            show=_live,
            help="Prorated by day over the rest of the current period: a higher price is charged on "
            "the next invoice, a lower one credited to the customer's balance now.",
        ),
        ObjectAction(
            "suspend",
            "Suspend",
            method="suspend_one",
            show=_live,
            confirm=True,
            help="A staff suspension: only staff lift it (a payment does not).",
        ),
        ObjectAction("resume", "Resume", method="resume_one", show=lambda s: s.status == SubscriptionStatus.SUSPENDED),
        ObjectAction(
            "cancel",
            "Cancel",
            method="cancel_one",
            form=CancelForm,
            style="danger",
            confirm="Cancelling ends the customer's service (now, or at the end of the period).",
            show=lambda s: s.status != SubscriptionStatus.CANCELLED and not s.cancel_at_period_end,
        ),
    ]

    status_badge = status_column()
    status = status_column()  # the list column keeps its name (field-status)
    period_end = time_column("current_period_end", "Period ends")

    @admin.display(description="Subscription", ordering="customer__name")
    def title(self, obj):
        return subscription_title(obj)

    @admin.display(description="Price")
    def price(self, obj):
        return money(obj.unit_price * obj.quantity, obj.currency)

    def object_title(self, obj) -> str:
        return subscription_title(obj)

    def has_add_permission(self, request):
        return admin.ModelAdmin.has_add_permission(self, request)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("customer", "product", "tenant")

    def get_inlines(self, request, obj):
        return [] if obj is None else [SubscriptionChargeInline]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["customer", "product", "cycle", "currency", "quantity", "bill_now"]
        return [
            "customer_link",
            "product_link",
            "status_badge",
            "suspension",
            "cycle",
            "quantity",
            "price",
            "tax_rate",
            "period",
            "billed_through",
            "cancel_at_period_end",
            "activated",
            "cancelled",
            "external_ref",
            "tenant",
        ]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def get_object_action_form(self, request, action, obj):
        if action.name == "change_plan":
            return _change_plan_form(obj)
        return super().get_object_action_form(request, action, obj)

    @admin.display(description="Customer")
    def customer_link(self, obj):
        return link(obj.customer, obj.customer.name)

    @admin.display(description="Product")
    def product_link(self, obj):
        return link(obj.product, obj.product.name)

    @admin.display(description="Suspension")
    def suspension(self, obj):
        if not obj.suspension_reason:
            return "—"
        return f"{obj.get_suspension_reason_display()} since {when(obj.suspended_at)}"

    @admin.display(description="Current period")
    def period(self, obj):
        return f"{when(obj.current_period_start)} to {when(obj.current_period_end)}"

    activated = time_column("activated_at", "Activated")
    cancelled = time_column("cancelled_at", "Cancelled")

    def service_save(self, request, form, formsets, change):
        data = form.cleaned_data
        customer = data["customer"]
        with tenant_scope(customer.tenant):
            return subscriptions.subscription_create(
                tenant=customer.tenant,
                customer=customer,
                product=data["product"],
                cycle=data["cycle"],
                currency=data.get("currency") or None,
                quantity=data["quantity"],
                bill_now=data.get("bill_now", False),
            )

    def response_add(self, request, obj, post_url_continue=None):
        # The subscription's page, with its buttons and first invoice, rather than the list.
        self.message_user(request, f"{subscription_title(obj)}: subscription created ({obj.get_status_display()}).")
        return HttpResponseRedirect(reverse("admin:billing_subscription_change", args=[obj.pk]))

    # -- buttons --

    def change_plan_preview(self, request, sub, data):
        change = subscriptions.subscription_change_preview(sub=sub, product=data["product"], quantity=data["quantity"])
        return plan_change_table(sub, change)

    def change_plan_one(self, request, sub, data):
        subscriptions.subscription_change(sub=sub, product=data["product"], quantity=data["quantity"])
        sub = Subscription.all_tenants.select_related("customer", "product").get(pk=sub.pk)
        return f"{subscription_title(sub)}: changed."

    def suspend_one(self, request, sub, data):
        subscriptions.subscription_suspend(sub=sub, actor=request.user)
        return f"{subscription_title(sub)}: suspended."

    def resume_one(self, request, sub, data):
        sub = subscriptions.subscription_resume(sub=sub, actor=request.user)
        return f"{subscription_title(sub)}: resumed ({sub.get_status_display()})."

    def cancel_one(self, request, sub, data):
        at_end = data.get("when") == "period_end"
        subscriptions.subscription_cancel(sub=sub, at_period_end=at_end, actor=request.user)
        if at_end:
            return f"{subscription_title(sub)}: cancels at the end of the period ({when(sub.current_period_end)})."
        return f"{subscription_title(sub)}: cancelled."

    # -- list actions --

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


def plan_change_table(sub, change) -> str:
    """What a plan change costs, in words and money: shown before the operator confirms it."""
    cur, cycle = sub.currency, Cycle(sub.cycle).label.lower()
    rows = [
        ("Now", f"{sub.product.name} x{sub.quantity}", f"{money(change.old_total, cur)} {cycle}"),
        ("After the change", f"{change.product.name} x{change.quantity}", f"{money(change.new_total, cur)} {cycle}"),
    ]
    if change.proration is None:
        outcome = "Nothing to prorate: the price is the same, or the current period is not invoiced yet."
    elif change.net > 0:
        outcome = format_html(
            "<strong>{}</strong> is charged on the next invoice ({} to {}).",
            money(change.net, cur),
            when(change.on),
            when(change.period_end),
        )
    elif change.net < 0:
        outcome = format_html(
            "<strong>{}</strong> is credited to the customer's balance now ({} to {}).",
            money(-change.net, cur),
            when(change.on),
            when(change.period_end),
        )
    else:
        outcome = "Nothing to charge or credit."
    body = format_html_join("", "<tr><th>{}</th><td>{}</td><td class='money'>{}</td></tr>", rows)
    return format_html('<table id="proration"><tbody>{}</tbody></table><p id="proration-outcome">{}</p>', body, outcome)


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ["occurred", "subscription", "quantity", "idempotency_key", "charge", "tenant"]
    occurred = time_column("occurred_at", "Occurred")
    list_filter = ["tenant"]
    search_fields = ["idempotency_key", "subscription__id"]
    list_select_related = ["subscription", "charge", "tenant"]


@admin.register(SubscriptionCharge)
class SubscriptionChargeAdmin(ReadOnlyAdmin):
    list_display = ["subscription_name", "kind", "period_start", "period_end", "amount_money", "invoice_line", "tenant"]
    list_filter = ["kind", "tenant"]
    search_fields = ["description", "subscription__id"]
    list_select_related = ["subscription__customer", "subscription__product", "invoice_line", "tenant"]
    amount_money = amount_column("amount", "Amount", "subscription.currency")

    @admin.display(description="Subscription")
    def subscription_name(self, obj):
        return link(obj.subscription, subscription_title(obj.subscription))


@admin.register(DunningNotice)
class DunningNoticeAdmin(ReadOnlyAdmin):
    list_display = ["invoice", "step_words", "taken_on", "tenant"]

    @admin.display(description="Step", ordering="step")
    def step_words(self, obj):
        return dunning_step(obj.step)

    list_filter = ["step", "tenant"]
    search_fields = ["invoice__number"]
    list_select_related = ["invoice", "tenant"]


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(ReadOnlyAdmin):
    list_display = ["created", "invoice", "provider", "session_id", "amount_money", "status", "tenant"]
    created = time_column("created_at", "Opened")
    amount_money = amount_column("amount", "Amount")
    status_badge = status_column()
    status = status_column()  # the list column keeps its name (field-status)
    list_filter = ["provider", "status", "tenant"]
    search_fields = ["session_id", "invoice__number"]
    list_select_related = ["invoice", "tenant"]
