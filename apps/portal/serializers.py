"""Shapes of the portal API (``/api/v1/portal/…``) and of the staff's portal-user API."""

from __future__ import annotations

from django.core.validators import URLValidator
from rest_framework import serializers

from apps.billing.models import Invoice, InvoiceLine, Subscription
from apps.billing.serializers import MoneyField, SavedPaymentMethodSerializer
from apps.catalog.models import Cycle, Product
from apps.common.serializers import ModelSerializer, Serializer
from apps.orders.serializers import OrderSerializer as StaffOrderSerializer

from .models import PortalRole, PortalSession, PortalUser

# --- the staff's side: a customer's portal users --------------------------------------------------


class PortalUserSerializer(ModelSerializer):
    customer = serializers.UUIDField(source="customer_id", read_only=True)
    has_password = serializers.BooleanField(read_only=True)
    has_2fa = serializers.BooleanField(read_only=True)

    class Meta:
        model = PortalUser
        fields = [
            "id",
            "customer",
            "email",
            "name",
            "role",
            "is_active",
            "has_password",
            "has_2fa",
            "email_verified_at",
            "invited_at",
            "last_login_at",
            "created_at",
        ]
        read_only_fields = fields


class PortalUserInviteSerializer(Serializer):
    email = serializers.EmailField()
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    role = serializers.ChoiceField(choices=PortalRole.choices)


class PortalUserUpdateSerializer(Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    role = serializers.ChoiceField(choices=PortalRole.choices, required=False)
    is_active = serializers.BooleanField(required=False)


# --- the customers' side ----------------------------------------------------------------------------


class PortalLoginSerializer(Serializer):
    tenant = serializers.SlugField(help_text="The business's slug, as in /portal/<slug>/.")
    email = serializers.EmailField()
    password = serializers.CharField(max_length=256, trim_whitespace=False)
    code = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=8,
        help_text="The TOTP code, when the user has two-factor authentication.",
    )


class PortalTokenSerializer(Serializer):
    token = serializers.CharField(help_text="Send as Authorization: Bearer <token> (mpc_…).")
    expires_at = serializers.DateTimeField()


class PortalMeSerializer(ModelSerializer):
    customer = serializers.SerializerMethodField()

    class Meta:
        model = PortalUser
        fields = ["id", "email", "name", "role", "customer", "email_verified_at", "last_login_at"]
        read_only_fields = fields

    def get_customer(self, user) -> dict:
        c = user.customer
        return {
            "id": str(c.pk),
            "name": c.name,
            "company": c.company,
            "email": c.email,
            "currency": c.currency,
            "country": str(c.country or ""),
        }


class PortalServiceSerializer(ModelSerializer):
    product = serializers.CharField(source="product.name", read_only=True)
    unit_price = MoneyField()

    class Meta:
        model = Subscription
        fields = [
            "id",
            "product",
            "status",
            "cycle",
            "quantity",
            "unit_price",
            "currency",
            "current_period_start",
            "current_period_end",
            "cancel_at_period_end",
            "config",
            "activated_at",
            "created_at",
        ]
        read_only_fields = fields


class PortalInvoiceLineSerializer(ModelSerializer):
    unit_price = MoneyField(currency_source="invoice.currency")
    amount = MoneyField(currency_source="invoice.currency")

    class Meta:
        model = InvoiceLine
        fields = ["description", "quantity", "unit_price", "tax_rate", "amount"]
        read_only_fields = fields


class PortalInvoiceSerializer(ModelSerializer):
    subtotal = MoneyField()
    tax_total = MoneyField()
    total = MoneyField()
    amount_paid = MoneyField()
    amount_due = MoneyField()
    lines = PortalInvoiceLineSerializer(many=True, read_only=True)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "status",
            "currency",
            "issue_date",
            "due_date",
            "subtotal",
            "tax_total",
            "total",
            "amount_paid",
            "amount_due",
            "paid_at",
            "lines",
        ]
        read_only_fields = fields


class PayLinkSerializer(Serializer):
    provider = serializers.CharField()
    id = serializers.CharField()
    url = serializers.URLField()
    expires_at = serializers.IntegerField(allow_null=True)


class PortalOrderItemInputSerializer(Serializer):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects)
    cycle = serializers.ChoiceField(choices=Cycle.choices)
    quantity = serializers.IntegerField(min_value=1, max_value=100, default=1)
    config = serializers.DictField(required=False, help_text='e.g. {"domain": "example.com"}')


class PortalOrderCreateSerializer(Serializer):
    items = PortalOrderItemInputSerializer(many=True, allow_empty=False, max_length=20)


class PortalOrderSerializer(StaffOrderSerializer):
    pass


class PortalCardSerializer(SavedPaymentMethodSerializer):
    """A saved card (the card itself stays at Stripe: brand, last four digits and expiry only)."""


class PortalPaymentMethodsSerializer(Serializer):
    cards_offered = serializers.BooleanField(help_text="Whether a card can be saved (the tenant's Stripe account).")
    accepted = serializers.ListField(child=serializers.CharField(), help_text="Other ways to pay each invoice.")
    results = PortalCardSerializer(many=True)


WEB_URL = URLValidator(schemes=["https", "http"])


class PortalCardSetupSerializer(Serializer):
    """Where Stripe's page sends the customer back (a storefront's own pages); default: the portal's."""

    success_url = serializers.URLField(required=False, max_length=2000, validators=[WEB_URL])
    cancel_url = serializers.URLField(required=False, max_length=2000, validators=[WEB_URL])


class PortalSessionSerializer(ModelSerializer):
    class Meta:
        model = PortalSession
        fields = ["id", "kind", "prefix", "created_at", "last_used_at", "expires_at", "ip", "user_agent"]
        read_only_fields = fields
