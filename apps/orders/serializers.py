from rest_framework import serializers

from apps.billing.serializers import MoneyField
from apps.catalog.models import Cycle, Product
from apps.common.money import CURRENCY_CHOICES
from apps.common.serializers import ModelSerializer, Serializer
from apps.customers.models import Customer

from .models import Order, OrderItem


class OrderItemInputSerializer(Serializer):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects)
    cycle = serializers.ChoiceField(choices=Cycle.choices)
    quantity = serializers.IntegerField(min_value=1, max_value=10000, default=1)
    config = serializers.DictField(required=False, help_text='e.g. {"domain": "example.com"} or {"plan": "small"}')


class OrderCreateSerializer(Serializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects)
    currency = serializers.ChoiceField(choices=CURRENCY_CHOICES, required=False)
    items = OrderItemInputSerializer(many=True, allow_empty=False, max_length=100)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class OrderItemSerializer(ModelSerializer):
    product = serializers.UUIDField(source="product_id", read_only=True)
    subscription = serializers.UUIDField(source="subscription_id", read_only=True, allow_null=True)
    unit_price = MoneyField(currency_source="order.currency")
    setup_fee = MoneyField(currency_source="order.currency")
    total = MoneyField(currency_source="order.currency")

    class Meta:
        model = OrderItem
        fields = ["id", "product", "cycle", "quantity", "config", "unit_price", "setup_fee", "tax_rate", "total",
                  "subscription"]  # fmt: skip
        read_only_fields = fields


class OrderSerializer(ModelSerializer):
    customer = serializers.UUIDField(source="customer_id", read_only=True)
    invoice = serializers.UUIDField(source="invoice_id", read_only=True, allow_null=True)
    items = OrderItemSerializer(many=True, read_only=True)
    subtotal = MoneyField()
    tax_total = MoneyField()
    total = MoneyField()

    class Meta:
        model = Order
        fields = ["id", "customer", "status", "currency", "subtotal", "tax_total", "total", "invoice", "notes",
                  "items", "accepted_at", "completed_at", "cancelled_at", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = fields
