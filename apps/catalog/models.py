"""The product catalog of a tenant: products, their prices per currency and cycle, bundles, tax rates.

Money is a ``Decimal`` plus a currency. Amounts are stored with three decimal places (the largest
minor-unit exponent of an active ISO 4217 currency) and must be quantized to their own currency's
minor unit (``JPY`` 0, ``USD`` 2, ``KWD`` 3): ``Price.clean`` and the services refuse anything else.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django_countries.fields import CountryField

from apps.common.display import money
from apps.common.money import CURRENCIES, CURRENCY_CHOICES, exponent
from apps.tenancy.models import TenantOwnedModel

MONEY = {"max_digits": 18, "decimal_places": 3}


class ProductType(models.TextChoices):
    CLOUDPOD_PLAN = "cloudpod_plan", "CloudPod plan"
    HOSTING_PLAN = "hosting_plan", "Hosting plan"
    DOMAIN = "domain", "Domain"
    ADDON = "addon", "Add-on"
    SERVICE = "service", "One-off service"


class TaxClass(models.TextChoices):
    STANDARD = "standard", "Standard"
    REDUCED = "reduced", "Reduced"
    ZERO = "zero", "Zero-rated"
    EXEMPT = "exempt", "Exempt"


# Classes whose rate is configured per country; zero and exempt are always 0 %.
RATED_TAX_CLASSES = [TaxClass.STANDARD, TaxClass.REDUCED]


class Visibility(models.TextChoices):
    PUBLIC = "public", "Public"
    HIDDEN = "hidden", "Hidden"
    RETIRED = "retired", "Retired"


class Cycle(models.TextChoices):
    MONTHLY = "monthly", "Monthly"
    QUARTERLY = "quarterly", "Quarterly"
    SEMIANNUAL = "semiannual", "Semi-annual"
    ANNUAL = "annual", "Annual"
    BIENNIAL = "biennial", "Biennial"
    TRIENNIAL = "triennial", "Triennial"
    ONETIME = "onetime", "One time"


# Months in a billing cycle; None for a one-time price (no effective monthly amount).
CYCLE_MONTHS: dict[str, int | None] = {
    Cycle.MONTHLY: 1,
    Cycle.QUARTERLY: 3,
    Cycle.SEMIANNUAL: 6,
    Cycle.ANNUAL: 12,
    Cycle.BIENNIAL: 24,
    Cycle.TRIENNIAL: 36,
    Cycle.ONETIME: None,
}
CYCLE_ORDER = {c: i for i, c in enumerate(Cycle.values)}


def is_quantized(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` has no more decimals than the currency's minor unit."""
    amount = Decimal(amount)
    if not amount.is_finite():
        return False
    return amount == amount.quantize(Decimal(1).scaleb(-exponent(currency)))


class Product(TenantOwnedModel):
    """Something a tenant sells. A product with components (``bundle_items``) is a bundle."""

    # What the audit trail records; also the fields a service (and the admin's form) may write.
    audit_fields = (
        "name", "slug", "description", "type", "tax_class", "visibility", "stock", "config", "metering",
        "bundle_discount_percent",
    )  # fmt: skip

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    type = models.CharField(max_length=16, choices=ProductType.choices)
    tax_class = models.CharField(max_length=10, choices=TaxClass.choices, default=TaxClass.STANDARD)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.HIDDEN)
    stock = models.PositiveIntegerField(null=True, blank=True, help_text="Units left to sell; empty = unlimited.")
    config = models.JSONField(
        default=dict, blank=True, help_text='Type-specific settings, e.g. {"plan": "small"} for a CloudPod plan.'
    )
    metering = models.JSONField(
        null=True,
        blank=True,
        help_text='Usage-based pricing, e.g. {"unit": "GB", "unit_prices": {"EUR": "0.05"}}; empty = not metered.',
    )
    bundle_discount_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        help_text="For a bundle: the discount on the sum of its components' prices (explicit prices win).",
    )

    class Meta:
        ordering = ["name", "slug"]
        indexes = [
            models.Index(fields=["tenant", "name", "slug"]),
            models.Index(fields=["tenant", "visibility", "name"]),
            models.Index(fields=["tenant", "-created_at"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="uniq_product_slug_per_tenant"),
            models.CheckConstraint(
                condition=Q(bundle_discount_percent__gte=0) & Q(bundle_discount_percent__lte=100),
                name="product_bundle_discount_0_100",
            ),
            models.CheckConstraint(condition=Q(type__in=ProductType.values), name="product_type_valid"),
            models.CheckConstraint(condition=Q(tax_class__in=TaxClass.values), name="product_tax_class_valid"),
            models.CheckConstraint(condition=Q(visibility__in=Visibility.values), name="product_visibility_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_retired(self) -> bool:
        return self.visibility == Visibility.RETIRED

    @property
    def is_orderable(self) -> bool:
        """Not retired and in stock (a hidden product can still be ordered by staff)."""
        return not self.is_retired and (self.stock is None or self.stock > 0)


class Price(TenantOwnedModel):
    """The price of a product in one currency for one billing cycle."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="prices", db_index=False)
    currency = models.CharField(max_length=3, choices=[(c, c) for c in CURRENCY_CHOICES])
    cycle = models.CharField(max_length=10, choices=Cycle.choices)
    amount = models.DecimalField(**MONEY, help_text="Charged every cycle (once for a one-time price).")
    setup_fee = models.DecimalField(**MONEY, default=Decimal("0"))

    class Meta:
        ordering = ["currency", "cycle"]
        indexes = [models.Index(fields=["tenant", "product", "currency", "cycle"])]
        constraints = [
            models.UniqueConstraint(fields=["product", "currency", "cycle"], name="uniq_price_product_currency_cycle"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="price_amount_not_negative"),
            models.CheckConstraint(condition=Q(setup_fee__gte=0), name="price_setup_fee_not_negative"),
            models.CheckConstraint(condition=Q(cycle__in=Cycle.values), name="price_cycle_valid"),
            models.CheckConstraint(condition=Q(currency__in=sorted(CURRENCIES)), name="price_currency_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.product} {money(self.amount, self.currency)} {self.cycle}"

    def clean(self):
        super().clean()
        if self.currency not in CURRENCIES:
            return  # the field's choices report it
        errors = {}
        for field in ("amount", "setup_fee"):
            value = getattr(self, field)
            if value is not None and not is_quantized(value, self.currency):
                errors[field] = f"{self.currency} has {exponent(self.currency)} decimal places."
        if errors:
            raise ValidationError(errors)


class BundleItem(TenantOwnedModel):
    """One component of a bundle: ``quantity`` units of ``component`` inside ``bundle``."""

    bundle = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="bundle_items", db_index=False)
    component = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="in_bundles")
    quantity = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["tenant", "bundle"]),
            models.Index(fields=["tenant", "component"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["bundle", "component"], name="uniq_bundle_component"),
            models.CheckConstraint(condition=~Q(bundle=F("component")), name="bundle_not_itself"),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="bundle_item_quantity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.component} in {self.bundle}"

    def clean(self):
        super().clean()
        if self.bundle_id is None or self.component_id is None:
            return
        problem = bundle_component_problem(bundle=self.bundle, component=self.component)
        if problem:
            raise ValidationError({"component": problem})


# The bundle rule, shared by ``BundleItem.clean`` (the admin's forms) and the services. It lives
# with the models because it is an invariant of ``BundleItem`` that needs only them.
def bundle_component_problem(*, bundle: Product, component: Product) -> str | None:
    """Why ``component`` cannot go into ``bundle``, or None.

    Bundles are one level deep: a bundle's components are plain products, so a bundle can never
    contain itself, directly or through another bundle.
    """
    if bundle.pk is not None and component.pk == bundle.pk:
        return "A bundle cannot contain itself."
    if bundle.tenant_id is not None and component.tenant_id != bundle.tenant_id:
        return "Must belong to the same tenant."
    if component.is_retired:
        return f"{component.name} is retired and cannot be added to a bundle."
    # The ids are this tenant's (checked above): the unscoped manager is safe and works in the admin too.
    if BundleItem.all_tenants.filter(bundle_id=component.pk).exists():
        return f"{component.name} is a bundle itself; bundles cannot be nested."
    if bundle.pk is not None and BundleItem.all_tenants.filter(component_id=bundle.pk).exists():
        return "This product is a component of another bundle, so it cannot have components."
    return None


class TaxRate(TenantOwnedModel):
    """The tax rate a tenant charges in one country for one tax class (standard or reduced)."""

    audit_fields = ("country", "tax_class", "rate", "name")

    country = CountryField()
    tax_class = models.CharField(max_length=10, choices=TaxClass.choices, default=TaxClass.STANDARD)
    rate = models.DecimalField(max_digits=7, decimal_places=4, help_text="Percent, e.g. 19 for 19 %.")
    name = models.CharField(max_length=100, help_text="Shown on invoices, e.g. 'VAT DE 19%'.")

    class Meta:
        ordering = ["country", "tax_class"]
        indexes = [models.Index(fields=["tenant", "country", "tax_class"])]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "country", "tax_class"], name="uniq_tax_rate_country_class"),
            models.CheckConstraint(condition=Q(rate__gte=0) & Q(rate__lte=100), name="tax_rate_0_100"),
            models.CheckConstraint(condition=Q(tax_class__in=RATED_TAX_CLASSES), name="tax_rate_class_rated"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.country} {self.tax_class} {self.rate}%)"

    def clean(self):
        super().clean()
        if self.tax_class and self.tax_class not in RATED_TAX_CLASSES:
            raise ValidationError({"tax_class": "Zero-rated and exempt classes are always 0 %: no rate to set."})
