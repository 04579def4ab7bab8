import re
from decimal import Decimal

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from apps.catalog.models import Product
from apps.common.money import CURRENCY_CHOICES, render_amount
from apps.common.serializers import ModelSerializer, Serializer
from apps.customers.models import Customer

from .models import (
    BillingSettings,
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentMethod,
    SavedPaymentMethod,
    StripeConnection,
    Subscription,
    UsageRecord,
    WebhookSecret,
)
from .periods import RECURRING_CYCLES


@extend_schema_field({"type": "string", "format": "decimal", "example": "19.99"})
class MoneyField(serializers.Field):
    """An amount shown with exactly its currency's minor-unit decimals, as a string."""

    def __init__(self, currency_source: str = "currency", **kwargs):
        kwargs.setdefault("read_only", True)
        self.currency_source = currency_source
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        currency = instance
        for part in self.currency_source.split("."):
            currency = getattr(currency, part)
        return super().get_attribute(instance), currency

    def to_representation(self, value):
        amount, currency = value
        return render_amount(amount, currency)


class InvoiceLineInputSerializer(Serializer):
    description = serializers.CharField(max_length=500)
    quantity = serializers.DecimalField(max_digits=14, decimal_places=4, min_value=Decimal("0.0001"), default=1)
    unit_price = serializers.DecimalField(max_digits=18, decimal_places=4, min_value=Decimal(0))
    discount = serializers.DecimalField(max_digits=18, decimal_places=4, min_value=Decimal(0), required=False)
    tax_rate = serializers.DecimalField(
        max_digits=7, decimal_places=4, min_value=Decimal(0), max_value=Decimal(100), required=False
    )
    period_start = serializers.DateField(required=False, allow_null=True)
    period_end = serializers.DateField(required=False, allow_null=True)


class InvoiceLineSerializer(ModelSerializer):
    discount = MoneyField(currency_source="invoice.currency")
    amount = MoneyField(currency_source="invoice.currency")
    tax_amount = MoneyField(currency_source="invoice.currency")
    total = MoneyField(currency_source="invoice.currency")

    class Meta:
        model = InvoiceLine
        fields = [
            "id", "description", "quantity", "unit_price", "discount", "tax_rate", "period_start", "period_end",
            "amount", "tax_amount", "total",
        ]  # fmt: skip
        read_only_fields = fields


class InvoiceSerializer(ModelSerializer):
    customer = serializers.UUIDField(source="customer_id", read_only=True)
    lines = InvoiceLineSerializer(many=True, read_only=True)
    subtotal = MoneyField()
    discount_total = MoneyField()
    tax_total = MoneyField()
    total = MoneyField()
    amount_paid = MoneyField()
    amount_credited = MoneyField()
    credit_applied = MoneyField()
    amount_due = MoneyField()

    class Meta:
        model = Invoice
        fields = [
            "id", "number", "status", "customer", "currency", "issue_date", "due_date", "subtotal", "discount_total",
            "tax_total", "total", "prices_include_tax", "amount_paid", "amount_credited", "credit_applied",
            "amount_due", "notes", "billing_details", "lines", "issued_at", "paid_at", "voided_at", "created_at",
            "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class InvoiceCreateSerializer(Serializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects)
    currency = serializers.ChoiceField(choices=CURRENCY_CHOICES, required=False)
    due_date = serializers.DateField(required=False, allow_null=True)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    lines = InvoiceLineInputSerializer(many=True, allow_empty=True, max_length=500)


class InvoiceUpdateSerializer(Serializer):
    currency = serializers.ChoiceField(choices=CURRENCY_CHOICES, required=False)
    due_date = serializers.DateField(required=False, allow_null=True)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    lines = InvoiceLineInputSerializer(many=True, required=False, max_length=500)


class PaySerializer(Serializer):
    amount = serializers.DecimalField(max_digits=18, decimal_places=4, required=False)
    method = serializers.ChoiceField(
        choices=[PaymentMethod.BANK_TRANSFER, PaymentMethod.CASH, PaymentMethod.CHEQUE, PaymentMethod.STRIPE]
    )
    reference = serializers.CharField(required=False, allow_blank=True, max_length=200)

    def validate(self, data):
        if data["method"] != PaymentMethod.STRIPE and data.get("amount") is None:
            raise serializers.ValidationError({"amount": ["This field is required."]})
        return data


class CheckoutLinkSerializer(Serializer):
    provider = serializers.CharField()
    id = serializers.CharField()
    url = serializers.URLField()
    expires_at = serializers.IntegerField(allow_null=True)


class PaymentSerializer(ModelSerializer):
    invoice = serializers.UUIDField(source="invoice_id", read_only=True)
    customer = serializers.UUIDField(source="customer_id", read_only=True)
    amount = MoneyField()
    applied_to_invoice = MoneyField()
    credited_to_balance = MoneyField()
    refunded_amount = MoneyField()

    class Meta:
        model = Payment
        fields = [
            "id", "invoice", "customer", "amount", "currency", "method", "status", "reference", "applied_to_invoice",
            "credited_to_balance", "refunded_amount", "failure_reason", "received_at", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class SavedPaymentMethodSerializer(ModelSerializer):
    """A saved card as people see it (the card itself stays at Stripe)."""

    customer = serializers.UUIDField(source="customer_id", read_only=True)
    label = serializers.CharField(source="__str__", read_only=True)
    expiry = serializers.CharField(read_only=True)

    class Meta:
        model = SavedPaymentMethod
        fields = [
            "id", "customer", "label", "type", "brand", "last4", "exp_month", "exp_year", "expiry", "is_default",
            "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class RefundSerializer(Serializer):
    amount = serializers.DecimalField(max_digits=18, decimal_places=4)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


class CreditNoteLineInputSerializer(Serializer):
    invoice_line = serializers.UUIDField()
    amount = serializers.DecimalField(max_digits=18, decimal_places=4)


class CreditNoteCreateSerializer(Serializer):
    lines = CreditNoteLineInputSerializer(many=True, required=False, allow_empty=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


class CreditNoteLineSerializer(ModelSerializer):
    invoice_line = serializers.UUIDField(source="invoice_line_id", read_only=True, allow_null=True)
    amount = MoneyField(currency_source="credit_note.currency")
    tax_amount = MoneyField(currency_source="credit_note.currency")
    total = MoneyField(currency_source="credit_note.currency")

    class Meta:
        model = CreditNoteLine
        fields = ["id", "invoice_line", "description", "amount", "tax_amount", "total"]
        read_only_fields = fields


class CreditNoteSerializer(ModelSerializer):
    invoice = serializers.UUIDField(source="invoice_id", read_only=True)
    customer = serializers.UUIDField(source="customer_id", read_only=True)
    lines = CreditNoteLineSerializer(many=True, read_only=True)
    subtotal = MoneyField()
    tax_total = MoneyField()
    total = MoneyField()
    applied_to_invoice = MoneyField()
    credited_to_balance = MoneyField()

    class Meta:
        model = CreditNote
        fields = [
            "id", "number", "invoice", "customer", "currency", "reason", "subtotal", "tax_total", "total",
            "applied_to_invoice", "credited_to_balance", "lines", "issued_at", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class SubscriptionSerializer(ModelSerializer):
    customer = serializers.UUIDField(source="customer_id", read_only=True)
    product = serializers.UUIDField(source="product_id", read_only=True)
    unit_price = MoneyField()

    class Meta:
        model = Subscription
        fields = [
            "id", "customer", "product", "status", "currency", "cycle", "quantity", "unit_price", "tax_rate",
            "anchor_date", "current_period_start", "current_period_end", "billed_through", "cancel_at_period_end",
            "cancelled_at", "suspended_at", "suspension_reason", "activated_at", "external_ref", "config",
            "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class SubscriptionCreateSerializer(Serializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects)
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects)
    cycle = serializers.ChoiceField(choices=RECURRING_CYCLES)
    currency = serializers.ChoiceField(choices=CURRENCY_CHOICES, required=False)
    quantity = serializers.IntegerField(min_value=1, max_value=100000, default=1)
    config = serializers.DictField(required=False)
    external_ref = serializers.CharField(required=False, allow_blank=True, max_length=64)


class SubscriptionUpdateSerializer(Serializer):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects, required=False)
    quantity = serializers.IntegerField(min_value=1, max_value=100000, required=False)

    def validate(self, data):
        if not data:
            raise serializers.ValidationError("Give a product or a quantity to change.")
        return data


class CancelSerializer(Serializer):
    at_period_end = serializers.BooleanField(default=False)
    credit_unused = serializers.BooleanField(
        default=False,
        help_text="On an immediate cancel: credit the unused days of the paid period to the customer's balance.",
    )


class UsageSerializer(Serializer):
    quantity = serializers.DecimalField(max_digits=18, decimal_places=4, min_value=Decimal("0.0001"))
    idempotency_key = serializers.CharField(max_length=200, required=False)
    occurred_at = serializers.DateTimeField(required=False)


class UsageRecordSerializer(ModelSerializer):
    subscription = serializers.UUIDField(source="subscription_id", read_only=True)
    billed = serializers.SerializerMethodField()

    class Meta:
        model = UsageRecord
        fields = ["id", "subscription", "quantity", "idempotency_key", "occurred_at", "billed", "created_at"]
        read_only_fields = fields

    def get_billed(self, obj) -> bool:
        return obj.charge_id is not None


# --- provider webhooks ---

WebhookAnswer = inline_serializer("WebhookAnswer", {"received": serializers.BooleanField(),
                                                     "status": serializers.CharField()})  # fmt: skip


# What DRF's CharField refuses in a value besides its length: NUL (ProhibitNullCharactersValidator) and
# lone surrogates (ProhibitSurrogateCharactersValidator; a JSON body may carry them as \\ud800 escapes).
_REFUSED_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


class GenericEventSerializer(Serializer):
    id = serializers.CharField(max_length=255)
    type = serializers.CharField(max_length=100)
    data = serializers.DictField()

    @classmethod
    def envelope(cls, payload) -> tuple[str, str]:
        """The event's ``(id, type)`` as ``validated_data`` gives them; a 400 (``ValidationError``) as
        ``is_valid(raise_exception=True)`` raises it. A delivery is read on every webhook answer: a body the
        fields accept without a doubt (strings that stay within their length once stripped, with no
        character DRF refuses, and an object ``data``) is read here without building the serializer (~1 ms);
        any other is read by the serializer, which gives every refusal its own answer
        (tests/billing/test_webhook_answer_fast.py compares both on good and bad bodies)."""
        if isinstance(payload, dict) and isinstance(payload.get("data"), dict):
            event_id, type_ = payload.get("id"), payload.get("type")
            if isinstance(event_id, str) and isinstance(type_, str):
                event_id, type_ = event_id.strip(), type_.strip()
                if (
                    0 < len(event_id) <= 255
                    and 0 < len(type_) <= 100
                    and not _REFUSED_CHARACTERS.search(event_id)
                    and not _REFUSED_CHARACTERS.search(type_)
                ):
                    return event_id, type_
        serializer = cls(data=payload if isinstance(payload, dict) else {})
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data["id"], serializer.validated_data["type"]


# --- settings, Stripe Connect, the tenant's generic webhook secrets -----------------------------------


class BillingSettingsSerializer(ModelSerializer):
    # None for a tenant that never changed its settings (the defaults are answered).
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = BillingSettings
        fields = [
            "invoice_number_format", "credit_note_number_format", "payment_terms_days", "lead_days",
            "reminder_days_before", "reminder_days_after", "suspend_after_days", "terminate_after_days",
            "currencies", "payment_methods", "prices_include_tax", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class BillingSettingsInputSerializer(Serializer):
    """Every field optional: those left out keep their value. The rules across fields (a format that
    cannot give unique numbers, cancellation before suspension) are the service's, a 400 naming the field."""

    invoice_number_format = serializers.CharField(max_length=64, required=False)
    credit_note_number_format = serializers.CharField(max_length=64, required=False)
    payment_terms_days = serializers.IntegerField(min_value=0, max_value=365, required=False)
    lead_days = serializers.IntegerField(min_value=0, max_value=90, required=False)
    reminder_days_before = serializers.ListField(child=serializers.IntegerField(), max_length=10, required=False)
    reminder_days_after = serializers.ListField(child=serializers.IntegerField(), max_length=10, required=False)
    suspend_after_days = serializers.IntegerField(min_value=0, max_value=365, allow_null=True, required=False)
    terminate_after_days = serializers.IntegerField(min_value=0, max_value=365, allow_null=True, required=False)
    currencies = serializers.ListField(
        child=serializers.ChoiceField(choices=CURRENCY_CHOICES), max_length=50, required=False
    )
    payment_methods = serializers.ListField(
        child=serializers.ChoiceField(choices=PaymentMethod.values), min_length=1, required=False
    )
    prices_include_tax = serializers.BooleanField(
        required=False, help_text="true: unit prices include tax (gross); false: tax is added on top (net)."
    )


class StripeConnectionSerializer(Serializer):
    """The tenant's Stripe account as the platform knows it (``connected: false`` when it has none)."""

    connected = serializers.BooleanField()
    status = serializers.CharField(
        help_text="none, pending (onboarding not finished), restricted (Stripe asks for more), active "
        "(takes card payments) or disconnected."
    )
    account_id = serializers.CharField(allow_null=True)
    account_type = serializers.CharField(allow_null=True)
    charges_enabled = serializers.BooleanField()
    payouts_enabled = serializers.BooleanField()
    details_submitted = serializers.BooleanField()
    requirements_due = serializers.ListField(child=serializers.CharField())
    platform_fee_percent = serializers.DecimalField(max_digits=5, decimal_places=2)
    connected_at = serializers.DateTimeField(allow_null=True)
    disconnected_at = serializers.DateTimeField(allow_null=True)

    @staticmethod
    def of(connection: StripeConnection | None) -> dict:
        if connection is None:
            return {
                "connected": False, "status": "none", "account_id": None, "account_type": None,
                "charges_enabled": False, "payouts_enabled": False, "details_submitted": False,
                "requirements_due": [], "platform_fee_percent": Decimal(0), "connected_at": None,
                "disconnected_at": None,
            }  # fmt: skip
        return {
            "connected": connection.live, "status": connection.status, "account_id": connection.account_id,
            "account_type": connection.account_type, "charges_enabled": connection.charges_enabled,
            "payouts_enabled": connection.payouts_enabled, "details_submitted": connection.details_submitted,
            "requirements_due": connection.requirements_due, "platform_fee_percent": connection.platform_fee_percent,
            "connected_at": connection.connected_at, "disconnected_at": connection.disconnected_at,
        }  # fmt: skip


class StripeConnectSerializer(Serializer):
    account_type = serializers.ChoiceField(choices=StripeConnection.AccountType.values, required=False)
    account_id = serializers.RegexField(
        r"^acct_[A-Za-z0-9]{1,64}$", required=False, help_text="An account the tenant has connected to the platform."
    )
    email = serializers.EmailField(required=False)
    country = serializers.RegexField(r"^[A-Z]{2}$", required=False, help_text="ISO 3166-1 alpha-2, e.g. NL.")


class StripeOnboardingSerializer(StripeConnectionSerializer):
    onboarding_url = serializers.URLField(help_text="Stripe's onboarding page; valid a few minutes.")
    onboarding_expires_at = serializers.IntegerField()


class WebhookSecretSerializer(ModelSerializer):
    class Meta:
        model = WebhookSecret
        fields = ["id", "prefix", "created_at", "expires_at"]
        read_only_fields = fields


class WebhookSecretsSerializer(Serializer):
    endpoint = serializers.CharField(help_text="Where the tenant's provider posts its events.")
    secrets = WebhookSecretSerializer(many=True, help_text="Valid now, newest first (two during a rotation).")


class WebhookSecretRotateSerializer(Serializer):
    grace_hours = serializers.IntegerField(
        min_value=0, max_value=168, required=False, help_text="How long the current secret stays valid (default 24)."
    )


class WebhookSecretCreatedSerializer(WebhookSecretsSerializer):
    secret = serializers.CharField(help_text="The new secret, shown this once: store it with your provider.")
