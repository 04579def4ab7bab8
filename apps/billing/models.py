"""Invoices, payments, credit notes, customer credit and provider webhook events.

Money is ``Decimal`` stored with the document's currency (``DecimalField(max_digits=18,
decimal_places=4)`` holds every ISO 4217 exponent); every stored amount is already rounded to
the currency's minor unit by the services. Issued documents never change: corrections are
credit notes.
"""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from apps.common.display import money, when
from apps.common.exceptions import InvalidInput
from apps.common.money import MAX_AMOUNT
from apps.tenancy.models import Tenant, TenantOwnedModel, TimestampedModel

from .validators import validate_number_format


def money_field(**kwargs):
    return models.DecimalField(max_digits=18, decimal_places=4, default=Decimal("0"), **kwargs)


def money_checks(model: str, *fields: str) -> list[models.CheckConstraint]:
    """No money column holds more than MAX_AMOUNT either way, nor PostgreSQL's NaN (which sorts
    above every number): the rule of apps.common.money.parse_amount, also on SQLite, which does
    not enforce numeric precision and would store a row it cannot read back."""
    return [
        models.CheckConstraint(
            condition=Q(**{f"{field}__gte": -MAX_AMOUNT, f"{field}__lte": MAX_AMOUNT}), name=f"{model}_{field}_in_range"
        )
        for field in fields
    ]


# Every way an invoice can be paid (PaymentMethod's values): manual ones an operator or member records,
# and the providers' own (Stripe Checkout on the tenant's connected account, the generic webhook).
def default_payment_methods() -> list[str]:
    return ["bank_transfer", "cash", "cheque", "stripe", "generic"]


class BillingSettings(TimestampedModel):
    """A tenant's billing configuration (one row per tenant, made on first use)."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="billing_settings")
    invoice_number_format = models.CharField(max_length=64, default="INV-{year}-{seq:06}")
    credit_note_number_format = models.CharField(max_length=64, default="CN-{year}-{seq:06}")
    payment_terms_days = models.PositiveSmallIntegerField(default=14)
    lead_days = models.PositiveSmallIntegerField(
        default=7, help_text="Renewal invoices are made this many days before the period starts."
    )
    reminder_days_before = models.JSONField(default=list, blank=True, help_text="e.g. [3]: 3 days before due.")
    reminder_days_after = models.JSONField(default=list, blank=True, help_text="e.g. [1, 7]: days after due.")
    suspend_after_days = models.PositiveSmallIntegerField(
        null=True, blank=True, default=14, help_text="Suspend the services this many days after due; empty = never."
    )
    terminate_after_days = models.PositiveSmallIntegerField(
        null=True, blank=True, default=45, help_text="Cancel the services this many days after due; empty = never."
    )
    currencies = models.JSONField(
        default=list, blank=True, help_text="The currencies invoices may be in (ISO 4217); empty = any."
    )
    payment_methods = models.JSONField(
        default=default_payment_methods, blank=True, help_text="The ways customers may pay this tenant's invoices."
    )
    prices_include_tax = models.BooleanField(
        default=False,
        help_text="Unit prices are gross (tax included, as consumers are shown them); off: net, tax added on top.",
    )

    class Meta:
        verbose_name = "billing settings"
        verbose_name_plural = "billing settings"

    def __str__(self) -> str:
        return f"Billing settings of {self.tenant}"

    def clean(self):
        for field in ("invoice_number_format", "credit_note_number_format"):
            try:
                validate_number_format(getattr(self, field))
            except InvalidInput as exc:
                raise ValidationError({field: exc.message}) from exc


class NumberSequence(models.Model):
    """The last number given in one series; locked while a document is numbered (gapless)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    series = models.CharField(max_length=16)  # invoice | credit_note
    period = models.CharField(max_length=8, blank=True)  # the year when the format has {year}
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "series", "period"], name="uniq_number_sequence")]

    def __str__(self) -> str:
        return f"{self.series} {self.period} #{self.last}"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    OPEN = "open", "Open"
    PAID = "paid", "Paid"
    VOID = "void", "Void"
    UNCOLLECTIBLE = "uncollectible", "Uncollectible"


class Invoice(TenantOwnedModel):
    # What the audit trail records of an invoice (apps.audit.services: created/change/deleted).
    audit_fields = (
        "status", "number", "currency", "issue_date", "due_date", "subtotal", "discount_total", "tax_total", "total",
        "amount_paid", "amount_credited", "credit_applied", "amount_due", "notes",
    )  # fmt: skip

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=64, null=True, blank=True)
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    currency = models.CharField(max_length=3)
    issue_date = models.DateField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    subtotal = money_field()
    discount_total = money_field()
    tax_total = money_field()
    # The tenant's tax behaviour when the invoice was made: its lines' prices are gross (tax inside)
    # or net (tax on top). Kept on the invoice, so a later change of the setting never moves it.
    prices_include_tax = models.BooleanField(default=False)
    total = money_field()
    amount_paid = money_field()
    amount_credited = money_field(help_text="Credit notes against this invoice.")
    credit_applied = money_field(help_text="Customer credit balance used to pay this invoice.")
    amount_due = money_field()
    notes = models.TextField(blank=True)
    billing_details = models.JSONField(default=dict, blank=True, help_text="The customer's details at issue.")
    seller_details = models.JSONField(
        default=dict, blank=True, help_text="The seller's details (the tenant's brand) at issue; its PDF shows these."
    )
    issued_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    marked_uncollectible_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="uniq_invoice_number_per_tenant"),
            models.CheckConstraint(condition=Q(amount_due__gte=0), name="invoice_amount_due_not_negative"),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(number__isnull=False), name="invoice_number_when_issued"
            ),
            *money_checks(
                "invoice",
                "subtotal",
                "discount_total",
                "tax_total",
                "total",
                "amount_paid",
                "amount_credited",
                "credit_applied",
                "amount_due",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["tenant", "status", "-created_at"]),
            models.Index(fields=["tenant", "customer", "-created_at"]),
            models.Index(fields=["tenant", "due_date"]),
        ]

    def __str__(self) -> str:
        return self.number or f"Draft {str(self.pk)[:8]}"


class InvoiceLine(TenantOwnedModel):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    description = models.CharField(max_length=500)
    quantity = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("1"))
    unit_price = models.DecimalField(max_digits=18, decimal_places=4)
    discount = money_field(help_text="An amount off this line, before tax.")
    tax_rate = models.DecimalField(max_digits=7, decimal_places=4, default=Decimal("0"), help_text="Percent.")
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    amount = money_field(help_text="quantity x unit price, rounded.")
    tax_amount = money_field()
    total = money_field(help_text="amount - discount + tax.")

    class Meta:
        ordering = ["invoice", "position", "created_at"]
        constraints = money_checks("invoice_line", "unit_price", "discount", "amount", "tax_amount", "total")
        indexes = [models.Index(fields=["tenant", "invoice", "position"])]

    def __str__(self) -> str:
        return self.description


class PaymentMethod(models.TextChoices):
    BANK_TRANSFER = "bank_transfer", "Bank transfer"
    CASH = "cash", "Cash"
    CHEQUE = "cheque", "Cheque"
    STRIPE = "stripe", "Stripe"
    GENERIC = "generic", "Payment provider (generic webhook)"


class PaymentStatus(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REFUNDED = "refunded", "Refunded"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"


class Payment(TenantOwnedModel):
    """Money received from a customer for one invoice (the excess goes to the customer's credit)."""

    audit_fields = ("amount", "currency", "method", "status", "reference", "applied_to_invoice", "refunded_amount")

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="payments")
    amount = money_field()
    currency = models.CharField(max_length=3)
    method = models.CharField(max_length=16, choices=PaymentMethod.choices)
    status = models.CharField(max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.SUCCEEDED)
    reference = models.CharField(max_length=200, blank=True)
    provider_ref = models.CharField(max_length=200, null=True, blank=True, help_text="e.g. Stripe's payment intent")
    provider_account = models.CharField(
        max_length=255, blank=True, default="",
        help_text="The connected Stripe account the money went to (empty: the platform's own); refunds go there.",
    )  # fmt: skip
    applied_to_invoice = money_field()
    credited_to_balance = money_field()
    refunded_amount = money_field()
    failure_reason = models.CharField(max_length=500, blank=True)
    received_at = models.DateTimeField()
    provider_state_at = models.DateTimeField(null=True, blank=True, help_text="Time of the newest provider event.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "method", "provider_ref"],
                condition=Q(provider_ref__isnull=False),
                name="uniq_payment_provider_ref",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_amount_not_negative"),
            *money_checks("payment", "amount", "applied_to_invoice", "credited_to_balance", "refunded_amount"),
        ]
        indexes = [
            models.Index(fields=["tenant", "-received_at"]),
            models.Index(fields=["tenant", "invoice"]),
            # A Stripe refund names only the payment intent (globally unique at Stripe), no tenant.
            models.Index(
                fields=["method", "provider_ref"], condition=Q(provider_ref__isnull=False), name="payment_provider_ref"
            ),
        ]

    def __str__(self) -> str:
        return f"{money(self.amount, self.currency)} by {self.get_method_display().lower()}"


class CreditNote(TenantOwnedModel):
    """A correction of an issued invoice; its total never exceeds what is left of the invoice's."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=64)
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=500, blank=True)
    subtotal = money_field()
    tax_total = money_field()
    total = money_field()
    applied_to_invoice = money_field(help_text="Reduced the invoice's amount due.")
    credited_to_balance = money_field(help_text="Went to the customer's credit (the invoice was paid).")
    issued_at = models.DateTimeField()
    seller_details = models.JSONField(
        default=dict, blank=True, help_text="The seller's details (the tenant's brand) at issue; its PDF shows these."
    )

    class Meta:
        ordering = ["-issued_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="uniq_credit_note_number"),
            *money_checks("credit_note", "subtotal", "tax_total", "total", "applied_to_invoice", "credited_to_balance"),
        ]
        indexes = [models.Index(fields=["tenant", "-issued_at"]), models.Index(fields=["tenant", "invoice"])]

    def __str__(self) -> str:
        return self.number


class CreditNoteLine(TenantOwnedModel):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="lines")
    invoice_line = models.ForeignKey(InvoiceLine, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=500)
    amount = money_field(help_text="Net amount credited, before tax.")
    tax_amount = money_field()
    total = money_field()

    class Meta:
        ordering = ["credit_note", "created_at"]
        constraints = money_checks("credit_note_line", "amount", "tax_amount", "total")
        indexes = [models.Index(fields=["tenant", "credit_note"])]

    def __str__(self) -> str:
        return self.description


class CreditTransaction(TenantOwnedModel):
    """The customer credit ledger: the balance is the sum of a customer's rows in one currency."""

    class Kind(models.TextChoices):
        OVERPAYMENT = "overpayment", "Over-payment"
        CREDIT_NOTE = "credit_note", "Credit note on a paid invoice"
        APPLIED = "applied", "Applied to an invoice"
        ADJUSTMENT = "adjustment", "Manual adjustment"
        REFUND = "refund", "Refunded to the customer"

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="credit_transactions")
    currency = models.CharField(max_length=3)
    amount = money_field(help_text="Positive adds credit, negative uses it.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    payment = models.ForeignKey(Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    credit_note = models.ForeignKey(CreditNote, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = money_checks("credit_transaction", "amount")
        indexes = [models.Index(fields=["tenant", "customer", "currency"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {money(self.amount, self.currency)}"


class WebhookEvent(TimestampedModel):
    """A provider delivery, stored once by its event id before it is processed.

    Not tenant-owned: the tenant is known only after the payload is read (from the invoice).
    """

    class Provider(models.TextChoices):
        STRIPE = "stripe", "Stripe"
        GENERIC = "generic", "Generic"

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (type not handled)"
        UNMATCHED = "unmatched", "Unmatched (no such invoice or payment)"
        FAILED = "failed", "Failed"

    provider = models.CharField(max_length=16, choices=Provider.choices)
    event_id = models.CharField(max_length=255)
    # Where the delivery came in: "" for the platform's endpoints, the tenant's id for its own generic
    # endpoint (a generic event id is the tenant's own text: two tenants' "evt-1" are two events).
    scope = models.CharField(max_length=64, blank=True, default="")
    # The connected Stripe account a Connect event names (Event.account); "" for the platform's own.
    account = models.CharField(max_length=255, blank=True, default="")
    type = models.CharField(max_length=100)
    event_created = models.DateTimeField(null=True, blank=True)
    # The tenant the event was applied to; for a Connect event or a tenant endpoint's, the tenant it is
    # bound to before anything is read from its payload (it can touch nothing of another tenant's).
    # Indexed by (tenant, -created_at), which leads with it.
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    payload = models.JSONField()
    raw_body = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "scope", "event_id"], name="uniq_webhook_event_in_scope")
        ]
        indexes = [models.Index(fields=["status", "-created_at"]), models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.provider}:{self.type}:{self.event_id}"

    @property
    def bound_tenant_id(self):
        """The tenant the route bound this event to (a Connect account's, a tenant endpoint's), or None
        for the platform's own deliveries, which find their tenant from the invoice they name."""
        return self.tenant_id if (self.account or self.scope) else None


class SubscriptionStatus(models.TextChoices):
    PENDING = "pending", "Pending (first invoice unpaid)"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    SUSPENDED = "suspended", "Suspended"
    CANCELLED = "cancelled", "Cancelled"


class SuspensionReason(models.TextChoices):
    NONPAYMENT = "nonpayment", "Non-payment (lifted by a payment)"
    OPERATOR = "operator", "By staff (lifted only by staff)"


class Subscription(TenantOwnedModel):
    """A customer's recurring purchase of one product, billed in advance per period.

    The price is a snapshot taken when the subscription is made or changed, so later catalog
    changes never reprice running subscriptions. ``billed_through`` is the end of the last period
    that has an invoice line: the billing run bills each period once, however often it runs.
    """

    audit_fields = (
        "status", "product", "currency", "cycle", "quantity", "unit_price", "tax_rate", "current_period_start",
        "current_period_end", "billed_through", "cancel_at_period_end", "suspension_reason", "external_ref",
    )  # fmt: skip

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="subscriptions")
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=12, choices=SubscriptionStatus.choices, default=SubscriptionStatus.PENDING)
    currency = models.CharField(max_length=3)
    cycle = models.CharField(max_length=10)
    quantity = models.PositiveIntegerField(default=1)
    unit_price = money_field(help_text="Per unit and cycle, before tax (a snapshot of the catalog price).")
    tax_rate = models.DecimalField(max_digits=7, decimal_places=4, default=Decimal("0"))
    anchor_date = models.DateField(help_text="The day periods start on (clamped to short months).")
    current_period_start = models.DateField()
    current_period_end = models.DateField(help_text="Exclusive.")
    billed_through = models.DateField(help_text="Exclusive end of the last invoiced period.")
    cancel_at_period_end = models.BooleanField(default=False)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspension_reason = models.CharField(max_length=12, choices=SuspensionReason.choices, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    external_ref = models.CharField(
        max_length=64, blank=True, help_text="What this subscription provides, e.g. the CloudPod's id."
    )
    config = models.JSONField(default=dict, blank=True, help_text="Order configuration (domain name, plan).")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            *money_checks("subscription", "unit_price"),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="subscription_quantity_positive"),
            models.CheckConstraint(
                condition=Q(current_period_end__gt=F("current_period_start")), name="subscription_period_forward"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["tenant", "status", "-created_at"]),
            models.Index(fields=["tenant", "customer"]),
            models.Index(fields=["status", "billed_through"]),
        ]

    def __str__(self) -> str:
        # Who buys what: the list columns that show a subscription fetch its customer and product with it.
        quantity = f" x {self.quantity}" if self.quantity != 1 else ""
        return f"{self.customer.name} — {self.product.name}{quantity}"


class SubscriptionCharge(TenantOwnedModel):
    """One billed piece of a subscription. The unique key makes billing a period twice impossible."""

    class Kind(models.TextChoices):
        RECURRING = "recurring", "Recurring period"
        SETUP = "setup", "Setup fee"
        PRORATION = "proration", "Plan change proration"
        USAGE = "usage", "Metered usage"

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="charges", db_index=False)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    period_start = models.DateField()
    period_end = models.DateField()
    amount = money_field()
    description = models.CharField(max_length=500)
    invoice_line = models.OneToOneField(
        InvoiceLine, null=True, blank=True, on_delete=models.SET_NULL, related_name="subscription_charge"
    )

    class Meta:
        ordering = ["subscription", "period_start"]
        constraints = [
            *money_checks("subscription_charge", "amount"),
            models.UniqueConstraint(
                fields=["subscription", "kind", "period_start", "period_end"], name="uniq_subscription_charge_period"
            ),
        ]
        indexes = [models.Index(fields=["tenant", "subscription", "period_start"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {when(self.period_start)} to {when(self.period_end)}"


class UsageRecord(TenantOwnedModel):
    """A metered quantity reported for a subscription; deduplicated by its idempotency key."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="usage_records", db_index=False
    )
    quantity = models.DecimalField(max_digits=18, decimal_places=4)
    idempotency_key = models.CharField(max_length=200)
    occurred_at = models.DateTimeField()
    charge = models.ForeignKey(
        SubscriptionCharge, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "idempotency_key"], name="uniq_usage_key"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="usage_quantity_positive"),
        ]
        indexes = [models.Index(fields=["tenant", "subscription", "occurred_at"])]

    def __str__(self) -> str:
        return f"{self.quantity} at {when(self.occurred_at)}"


class DunningNotice(TenantOwnedModel):
    """One dunning step taken for one invoice (a reminder sent, services suspended): each step once."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="dunning_notices", db_index=False)
    step = models.CharField(max_length=32)  # e.g. "before:3", "after:7", "suspend", "terminate"
    taken_on = models.DateField()

    class Meta:
        ordering = ["invoice", "taken_on"]
        constraints = [models.UniqueConstraint(fields=["invoice", "step"], name="uniq_dunning_step")]
        indexes = [models.Index(fields=["tenant", "-taken_on"])]

    def __str__(self) -> str:
        return f"{self.step_label}, {when(self.taken_on)}"

    @property
    def step_label(self) -> str:
        """The step as an operator reads it: "Reminder 3 days after due", "Services suspended"."""
        kind, _, days = self.step.partition(":")
        if kind in ("before", "after") and days.isdigit():
            unit = "day" if days == "1" else "days"
            return f"Reminder {days} {unit} {kind} due"
        fixed = {"past_due": "Marked past due", "suspend": "Services suspended", "terminate": "Services cancelled"}
        return fixed.get(self.step, self.step.replace("_", " ").capitalize())


class CheckoutSession(TenantOwnedModel):
    """A hosted payment page we opened at a provider, kept so that a payment whose webhook never
    arrives is still found (the reconciler asks the provider about open sessions)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="checkout_sessions")
    provider = models.CharField(max_length=16, default="stripe")
    session_id = models.CharField(max_length=255)
    account = models.CharField(max_length=255, blank=True, default="", help_text="The connected Stripe account.")
    application_fee = money_field(help_text="The platform's fee on this payment.")
    amount = money_field()
    currency = models.CharField(max_length=3)
    url = models.URLField(max_length=2000)
    status = models.CharField(max_length=16, default="open")  # open | paid | expired
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["provider", "session_id"], name="uniq_checkout_session")]
        indexes = [models.Index(fields=["status", "created_at"]), models.Index(fields=["tenant", "invoice"])]

    def __str__(self) -> str:
        return f"{self.provider.capitalize()} checkout {self.session_id[:16]}…"


class StripeConnection(TimestampedModel):
    """A tenant's own Stripe account, connected to the platform (Stripe Connect): its customers' card
    payments are made on it (``Stripe-Account``), so the money is the tenant's. Only the account's id
    is kept: the platform's key acts on it, the tenant gives no secret key.

    One row per tenant; one account serves one tenant at a time (a partial unique index)."""

    class AccountType(models.TextChoices):
        EXPRESS = "express", "Express (onboarding by Stripe, dashboard light)"
        STANDARD = "standard", "Standard (the tenant's own full Stripe account)"

    audit_fields = (
        "account_id", "account_type", "charges_enabled", "payouts_enabled", "details_submitted",
        "platform_fee_percent", "disconnected_at",
    )  # fmt: skip

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="stripe_connection")
    account_id = models.CharField(max_length=255, help_text="Stripe's account id, acct_…")
    account_type = models.CharField(max_length=10, choices=AccountType.choices, default=AccountType.EXPRESS)
    charges_enabled = models.BooleanField(default=False)
    payouts_enabled = models.BooleanField(default=False)
    details_submitted = models.BooleanField(default=False)
    requirements_due = models.JSONField(default=list, blank=True, help_text="What Stripe still asks for.")
    platform_fee_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("0"),
        help_text="The platform's fee on each payment, in percent (set by operators only).",
    )  # fmt: skip
    status_at = models.DateTimeField(null=True, blank=True, help_text="Time of the newest account state we hold.")
    connected_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account_id"], condition=Q(disconnected_at__isnull=True), name="uniq_live_stripe_account"
            ),
            models.CheckConstraint(
                condition=Q(platform_fee_percent__gte=0) & Q(platform_fee_percent__lte=50),
                name="stripe_platform_fee_0_50",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} ({self.tenant})"

    @property
    def live(self) -> bool:
        return self.disconnected_at is None

    @property
    def status(self) -> str:
        if not self.live:
            return "disconnected"
        if self.charges_enabled:
            return "active"
        return "pending" if not self.details_submitted else "restricted"


class WebhookSecret(TenantOwnedModel):
    """A signing secret of the tenant's own generic webhook endpoint, encrypted at rest
    (``apps.billing.crypto``). Rotating makes a new one and lets the previous one expire after a grace
    period, so at most two are valid at once and no delivery is dropped while a provider switches."""

    audit_fields = ("prefix", "expires_at")

    secret_encrypted = models.TextField()
    prefix = models.CharField(max_length=16, help_text="The secret's first characters, to tell them apart.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: valid until rotated.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.prefix}…"


class StripeCustomer(TenantOwnedModel):
    """The Stripe Customer that stands for one of the tenant's customers on its connected account
    (made once, on the first card the customer saves; a card is attached to it). Another account
    (the tenant reconnected elsewhere) has its own."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="stripe_customers", db_index=False
    )
    account = models.CharField(max_length=255, help_text="The connected Stripe account, acct_…")
    stripe_customer_id = models.CharField(max_length=255, help_text="Stripe's customer id on that account, cus_…")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "account"], name="uniq_stripe_customer_per_account"),
            models.UniqueConstraint(fields=["account", "stripe_customer_id"], name="uniq_stripe_customer_id"),
        ]
        indexes = [models.Index(fields=["tenant", "customer"])]

    def __str__(self) -> str:
        return f"{self.stripe_customer_id} on {self.account}"


class SavedPaymentMethod(TenantOwnedModel):
    """A card a customer saved at Stripe (a SetupIntent on the tenant's connected account), charged for
    renewals when it is the default. Only what a person needs to recognise it is kept: the card
    itself stays at Stripe (``pm_…``)."""

    audit_fields = ("customer_id", "brand", "last4", "exp_month", "exp_year", "is_default")

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="saved_payment_methods")
    account = models.CharField(max_length=255, help_text="The connected Stripe account the card is saved on.")
    stripe_customer_id = models.CharField(max_length=255)
    stripe_payment_method_id = models.CharField(max_length=255, help_text="Stripe's payment method id, pm_…")
    type = models.CharField(max_length=32, default="card")
    brand = models.CharField(max_length=32, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    is_default = models.BooleanField(default=False, help_text="Charged for renewals.")

    class Meta:
        ordering = ["-is_default", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["account", "stripe_payment_method_id"], name="uniq_saved_payment_method"),
            models.UniqueConstraint(
                fields=["customer"], condition=Q(is_default=True), name="one_default_payment_method"
            ),
        ]
        indexes = [models.Index(fields=["tenant", "customer"])]

    def __str__(self) -> str:
        brand = (self.brand or self.type).capitalize()
        return f"{brand} •••• {self.last4}" if self.last4 else brand

    @property
    def expiry(self) -> str:
        return f"{self.exp_month:02d}/{self.exp_year}" if self.exp_month and self.exp_year else ""


class CardCharge(TenantOwnedModel):
    """The automatic charge of an issued invoice on the customer's default card (off-session, on the
    tenant's connected account): one per invoice, so a job that runs twice charges once. Its
    ``idempotency_key`` is sent to Stripe, so a retried request after a lost answer is the same
    charge. The payment itself is recorded by the same path as every Stripe payment (its id is the
    payment intent's)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing at Stripe"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    audit_fields = ("status", "amount", "currency", "payment_intent", "failure_code")

    invoice = models.OneToOneField(Invoice, on_delete=models.CASCADE, related_name="card_charge")
    payment_method = models.ForeignKey(
        SavedPaymentMethod, null=True, blank=True, on_delete=models.SET_NULL, related_name="charges"
    )
    account = models.CharField(max_length=255)
    stripe_payment_method_id = models.CharField(max_length=255)
    card_label = models.CharField(max_length=64, blank=True, help_text="The card as it was shown when charged.")
    amount = money_field()
    currency = models.CharField(max_length=3)
    application_fee = money_field()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    payment_intent = models.CharField(max_length=255, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    attempted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "payment_intent"])]

    def __str__(self) -> str:
        return f"Card charge of {money(self.amount, self.currency)} ({self.get_status_display().lower()})"

    @property
    def idempotency_key(self) -> str:
        return f"mpanel-autocharge-{self.invoice_id}"
