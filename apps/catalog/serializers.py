from decimal import Decimal

from django_countries.serializer_fields import CountryField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.common.money import CURRENCY_CHOICES, MAX_AMOUNT, quantize, render_amount
from apps.common.serializers import ModelSerializer, Serializer

from .models import MONEY, Cycle, Product, ProductType, TaxClass, TaxRate, Visibility


def money(value: Decimal | None, currency: str) -> str | None:
    """A decimal string with exactly the currency's minor-unit digits ("19.99", "1500", "1.250")."""
    return render_amount(value, currency)


class PriceSerializer(Serializer):
    currency = serializers.ChoiceField(choices=CURRENCY_CHOICES)
    cycle = serializers.ChoiceField(choices=Cycle.choices)
    # At most what every money column holds (apps.common.money.MAX_AMOUNT): a price is copied into
    # subscriptions and invoices, whose columns are narrower than the catalog's.
    amount = serializers.DecimalField(**MONEY, min_value=Decimal(0), max_value=MAX_AMOUNT)
    setup_fee = serializers.DecimalField(
        **MONEY, min_value=Decimal(0), max_value=MAX_AMOUNT, required=False, default=Decimal(0)
    )

    def to_representation(self, instance):
        return {
            "currency": instance.currency,
            "cycle": instance.cycle,
            "amount": money(instance.amount, instance.currency),
            "setup_fee": money(instance.setup_fee, instance.currency),
        }


class BundleItemSerializer(Serializer):
    product = serializers.UUIDField(help_text="The component product's id (a product of this tenant).")
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000, default=1)
    name = serializers.CharField(read_only=True, help_text="The component's name.")

    def to_representation(self, instance):
        return {"product": str(instance.component_id), "quantity": instance.quantity, "name": instance.component.name}


class MeteringSerializer(Serializer):
    """Documentation of the ``metering`` rule; the service validates it."""

    unit = serializers.CharField(max_length=32)
    unit_prices = serializers.DictField(child=serializers.CharField(), help_text="currency → price per unit")


class ProductSerializer(ModelSerializer):
    type = serializers.ChoiceField(choices=ProductType.choices)
    tax_class = serializers.ChoiceField(choices=TaxClass.choices, required=False)
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)
    slug = serializers.SlugField(max_length=100, required=False, allow_blank=True)
    config = serializers.JSONField(required=False, help_text="Type-specific settings (a JSON object).")
    metering = serializers.JSONField(required=False, allow_null=True, help_text=MeteringSerializer.__doc__)
    bundle_discount_percent = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=Decimal(0), max_value=Decimal(100), required=False
    )
    prices = PriceSerializer(many=True, required=False, help_text="When sent, replaces all prices.")
    bundle_items = BundleItemSerializer(many=True, required=False, help_text="When sent, replaces all components.")
    is_bundle = serializers.SerializerMethodField()

    class Meta:
        model = Product
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "type",
            "tax_class",
            "visibility",
            "stock",
            "config",
            "metering",
            "bundle_discount_percent",
            "is_bundle",
            "prices",
            "bundle_items",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "is_bundle", "created_at", "updated_at"]
        extra_kwargs = {"stock": {"min_value": 0, "max_value": 2_147_483_647}}

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_is_bundle(self, obj) -> bool:
        return bool(obj.bundle_items.all())

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("This field may not be blank.")
        return value

    def validate_config(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value

    def validate_prices(self, value):
        seen = set()
        for entry in value:
            # PATCH validates nested rows partially; a price row is always complete.
            missing = [name for name in ("currency", "cycle", "amount") if name not in entry]
            if missing:
                raise serializers.ValidationError(f"Each price needs {', '.join(missing)}.")
            entry.setdefault("setup_fee", Decimal(0))
            key = (entry["currency"], entry["cycle"])
            if key in seen:
                raise serializers.ValidationError(f"{key[0]} {key[1]} is priced twice.")
            seen.add(key)
            for name in ("amount", "setup_fee"):
                if entry[name] != quantize(entry[name], entry["currency"]):
                    raise serializers.ValidationError(
                        f"{key[0]} {key[1]}: {name} has more decimal places than {key[0]} allows."
                    )
        return value

    def validate_bundle_items(self, value):
        for item in value:
            if "product" not in item:
                raise serializers.ValidationError("Each component needs its product id.")
            item.setdefault("quantity", 1)
        ids = [item["product"] for item in value]
        if len(set(ids)) != len(ids):
            raise serializers.ValidationError("A component appears twice; use its quantity instead.")
        return value


class PriceRowSerializer(Serializer):
    """One row of ``GET /billing/products/{id}/pricing``; amounts as decimal strings in minor units."""

    currency = serializers.CharField()
    cycle = serializers.ChoiceField(choices=Cycle.choices)
    months = serializers.IntegerField(allow_null=True)
    recurring = serializers.CharField()
    setup_fee = serializers.CharField()
    effective_monthly = serializers.CharField(allow_null=True)
    source = serializers.ChoiceField(choices=["explicit", "bundle"])
    components_total = serializers.CharField(allow_null=True)
    components_setup_total = serializers.CharField(allow_null=True)
    bundle_discount = serializers.CharField(allow_null=True)
    recurring_tax = serializers.CharField(allow_null=True)
    setup_fee_tax = serializers.CharField(allow_null=True)
    recurring_total = serializers.CharField(allow_null=True)
    setup_fee_total = serializers.CharField(allow_null=True)

    MONEY_FIELDS = (
        "recurring",
        "setup_fee",
        "effective_monthly",
        "components_total",
        "components_setup_total",
        "bundle_discount",
        "recurring_tax",
        "setup_fee_tax",
        "recurring_total",
        "setup_fee_total",
    )

    def to_representation(self, row):
        data = {"currency": row.currency, "cycle": row.cycle, "months": row.months, "source": row.source}
        for name in self.MONEY_FIELDS:
            data[name] = money(getattr(row, name), row.currency)
        return data


class TaxSerializer(Serializer):
    country = serializers.CharField()
    rate = serializers.DecimalField(max_digits=7, decimal_places=4)
    name = serializers.CharField(allow_null=True)


class PriceTableSerializer(Serializer):
    product = serializers.UUIDField(source="product_id")
    tax_class = serializers.ChoiceField(choices=TaxClass.choices)
    tax = TaxSerializer(allow_null=True)
    rounding = serializers.SerializerMethodField()
    rows = PriceRowSerializer(many=True)

    @extend_schema_field(OpenApiTypes.STR)
    def get_rounding(self, obj) -> str:
        return "per line, ROUND_HALF_UP to the currency's minor unit"


class PricingQuerySerializer(Serializer):
    country = serializers.CharField(
        required=False, allow_blank=True, max_length=2, help_text="ISO 3166-1 alpha-2, e.g. DE"
    )


class TaxRateSerializer(ModelSerializer):
    country = CountryField()
    tax_class = serializers.ChoiceField(choices=TaxClass.choices, default=TaxClass.STANDARD)
    rate = serializers.DecimalField(max_digits=7, decimal_places=4, min_value=Decimal(0), max_value=Decimal(100))

    class Meta:
        model = TaxRate
        fields = ["id", "country", "tax_class", "rate", "name", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_tax_class(self, value):
        if value not in (TaxClass.STANDARD, TaxClass.REDUCED):
            raise serializers.ValidationError("Zero-rated and exempt classes are always 0 %: no rate to set.")
        return value

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("This field may not be blank.")
        return value


# --- the public catalog -----------------------------------------------------------------------------


class PublicPriceSerializer(Serializer):
    currency = serializers.CharField()
    cycle = serializers.ChoiceField(choices=Cycle.choices)
    amount = serializers.CharField()
    setup_fee = serializers.CharField()
    effective_monthly = serializers.CharField(allow_null=True)


class PublicComponentSerializer(Serializer):
    name = serializers.CharField()
    quantity = serializers.IntegerField()


class PublicProductSerializer(Serializer):
    """What anyone may see of a public product: no stock, tax class, config, metering internals."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    slug = serializers.CharField()
    description = serializers.CharField()
    type = serializers.ChoiceField(choices=ProductType.choices)
    includes = PublicComponentSerializer(many=True)
    prices = PublicPriceSerializer(many=True)


class PublicBrandSerializer(Serializer):
    """The tenant's brand as a storefront shows it."""

    display_name = serializers.CharField()
    logo_url = serializers.URLField(allow_null=True)
    primary_color = serializers.CharField()
    accent_color = serializers.CharField()
    support_email = serializers.CharField()
    support_url = serializers.CharField()
    support_phone = serializers.CharField()
    terms_url = serializers.CharField()


class PublicCatalogSerializer(Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    tenant = serializers.DictField(child=serializers.CharField())
    brand = PublicBrandSerializer()
    results = PublicProductSerializer(many=True)
