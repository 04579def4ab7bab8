"""Shapes of the portal API (``/api/v1/portal/…``) and of the staff's portal-user API."""

from __future__ import annotations

from django.core.validators import URLValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.billing.models import Invoice, InvoiceLine, Subscription
from apps.billing.serializers import MoneyField, SavedPaymentMethodSerializer
from apps.catalog.models import Cycle, Product
from apps.cloudpods.models import CloudPod
from apps.cloudpods.selectors import pod_runtime
from apps.common.serializers import ModelSerializer, Serializer
from apps.customers.models import Contact
from apps.databases.models import Database, DatabaseUser
from apps.domains.models import Domain
from apps.mail.models import Mailbox
from apps.orders.serializers import OrderSerializer as StaffOrderSerializer

from . import acts
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


class PortalCancelSerializer(Serializer):
    at_period_end = serializers.BooleanField(
        default=True, help_text="true: it runs to the end of the paid period; false: it ends now."
    )
    credit_unused = serializers.BooleanField(
        default=True, help_text="On an immediate cancel: the unused paid days go to the credit balance."
    )
    preview = serializers.BooleanField(default=False, help_text="true: answer the figures, change nothing.")


class PortalCancellationSerializer(Serializer):
    """What a cancel does (``preview``) or did: billing's ``Cancellation``."""

    applied = serializers.BooleanField()
    at_period_end = serializers.BooleanField()
    ends_on = serializers.DateField()
    currency = serializers.CharField()
    unused_days = serializers.IntegerField()
    credit = MoneyField(help_text="Added to the customer's credit balance (before tax).")
    no_credit_reason = serializers.CharField(
        help_text="Empty when credited; pending, unpaid, period_end, not_asked or nothing_left."
    )
    service = PortalServiceSerializer()


class PortalPlanChangeSerializer(Serializer):
    product = serializers.UUIDField(help_text="A public plan of the same type (GET /portal/services/:id shows it).")
    quantity = serializers.IntegerField(min_value=1, max_value=1000, required=False)
    preview = serializers.BooleanField(default=False, help_text="true: answer the figures, change nothing.")


class PortalPlanChangeQuoteSerializer(Serializer):
    """What a plan change costs (``preview``) or cost: billing's ``PlanChange``."""

    applied = serializers.BooleanField()
    product = serializers.CharField(source="product.name")
    product_id = serializers.UUIDField(source="product.pk")
    quantity = serializers.IntegerField()
    currency = serializers.CharField()
    old_total = MoneyField(help_text="Per cycle, before tax.")
    new_total = MoneyField(help_text="Per cycle, before tax.")
    on = serializers.DateField()
    period_end = serializers.DateField()
    charge = MoneyField(help_text="Added to the next invoice (before tax).")
    credit = MoneyField(help_text="Added to the credit balance now (before tax).")
    service = PortalServiceSerializer()


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


# --- the customers' side: the resources their services run (apps/portal/service_api.py) -----------


class PortalPodRuntimeSerializer(Serializer):
    state = serializers.CharField(help_text="running | paused | stopped | created | absent | unknown")
    memory_limit_bytes = serializers.IntegerField(allow_null=True)
    memory_usage_bytes = serializers.IntegerField(allow_null=True)
    cpu_seconds = serializers.FloatField(allow_null=True)
    pids = serializers.IntegerField(allow_null=True)


class PortalPodSerializer(ModelSerializer):
    service = serializers.UUIDField(source="subscription", read_only=True, allow_null=True)
    actions = serializers.SerializerMethodField(help_text="What may be done now: restart, suspend, resume.")
    runtime = serializers.SerializerMethodField()

    class Meta:
        model = CloudPod
        fields = ["id", "name", "plan", "status", "service", "actions", "runtime", "created_at"]
        read_only_fields = fields

    def get_actions(self, pod) -> list[str]:
        return acts.pod_actions(pod)

    @extend_schema_field(PortalPodRuntimeSerializer)
    def get_runtime(self, pod) -> dict:
        return pod_runtime(pod)


class PortalMailboxSerializer(ModelSerializer):
    address = serializers.CharField(read_only=True)
    domain = serializers.CharField(source="mail_domain.name", read_only=True)

    class Meta:
        model = Mailbox
        fields = ["id", "address", "domain", "quota_mb", "enabled", "created_at"]
        read_only_fields = fields


class PortalMailboxPasswordSerializer(Serializer):
    password = serializers.CharField(min_length=10, max_length=256, trim_whitespace=False, write_only=True)


class PortalDomainSerializer(ModelSerializer):
    class Meta:
        model = Domain
        fields = ["id", "name", "status", "registered_at", "expires_at", "auto_renew", "nameservers"]
        read_only_fields = fields


class PortalAutoRenewSerializer(Serializer):
    auto_renew = serializers.BooleanField()


class PortalDatabaseUserSerializer(ModelSerializer):
    class Meta:
        model = DatabaseUser
        fields = ["id", "full_name", "status", "password_changed_at"]
        read_only_fields = fields


class PortalDatabaseSerializer(ModelSerializer):
    engine = serializers.CharField(source="server.engine", read_only=True)
    host = serializers.CharField(source="server.host", read_only=True)
    port = serializers.IntegerField(source="server.port", read_only=True)
    users = serializers.SerializerMethodField(help_text="The customer's own logins granted on it.")

    class Meta:
        model = Database
        fields = ["id", "name", "full_name", "engine", "host", "port", "status", "size_bytes", "size_updated_at",
                  "users"]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(PortalDatabaseUserSerializer(many=True))
    def get_users(self, db) -> list:
        own = self.context.get("own_users", {})
        return PortalDatabaseUserSerializer([own[pk] for pk in own if pk in self.context["granted"].get(db.pk, ())],
                                            many=True).data  # fmt: skip


class PortalDatabasePasswordSerializer(Serializer):
    user = PortalDatabaseUserSerializer()
    password = serializers.CharField(help_text="Shown this once: it is not stored.")


class PortalContactSerializer(ModelSerializer):
    class Meta:
        model = Contact
        fields = ["id", "name", "email", "phone", "role", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"phone": {"required": False}, "role": {"required": False}}
