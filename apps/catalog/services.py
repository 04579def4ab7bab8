"""Every write to the catalog, plus the pricing functions other modules call.

Public API for other modules (invoices, orders, subscriptions, usage):

- ``product_create(*, tenant, data) -> Product``
- ``product_update(*, product, data) -> Product``  (``prices`` / ``bundle_items``, when given, replace all)
- ``product_retire(*, product) -> Product``
- ``product_delete(*, product) -> Product | None``  (retires a product that was sold; deletes one never sold)
- ``product_sold(product) -> bool``
- ``product_stock_take(*, product, quantity=1) -> Product``  (409 when out of stock; unlimited = no-op)
- ``product_stock_release(*, product, quantity=1) -> Product``
- ``tax_rate_create(*, tenant, data)``, ``tax_rate_update(*, tax_rate, data)``, ``tax_rate_delete(*, tax_rate)``
- ``price_table(product, *, country=None) -> PriceTable``  (pure: reads only)
- ``quote(product, cycle, currency, quantity=1, country=None) -> Quote``  (pure: reads only)
- ``usage_charge(product, *, currency, quantity) -> Decimal``  (the metering rule, before tax)
- ``tax_for(product, country) -> Tax | None``

Each write is one transaction and records an audit event.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.money import CURRENCIES, exponent, parse_amount

from . import validators
from .models import BundleItem, Cycle, Price, Product, TaxRate, Visibility, bundle_component_problem, is_quantized
from .pricing import PriceTable, Quote, Tax, price_table, quote, quote_from, tax_for, usage_charge

__all__ = [
    "PriceTable",
    "Quote",
    "Tax",
    "price_table",
    "product_create",
    "product_retire",
    "product_stock_release",
    "product_stock_take",
    "product_update",
    "quote",
    "quote_from",
    "tax_for",
    "tax_rate_create",
    "tax_rate_delete",
    "tax_rate_update",
    "usage_charge",
]

METERING_DECIMALS = 6


# --- products -------------------------------------------------------------------------------------


@transaction.atomic
def product_create(*, tenant, data: dict[str, Any]) -> Product:
    """Create a product with its prices and (for a bundle) its components, all or nothing."""
    data = dict(data)
    prices = data.pop("prices", None) or []
    items = data.pop("bundle_items", None) or []
    product = Product(tenant=tenant)
    _apply_fields(product, data)
    if not product.slug:
        product.slug = _free_slug(product)
    _save_product(product)
    _replace_prices(product, prices)
    _replace_bundle_items(product, items)
    # A new row's "after" with its prices and components (other rows): ``audit.created`` takes no extras.
    audit.record(action="product.create", obj=product, after={**audit.snapshot(product), **_rows(product)})
    return product


@transaction.atomic
def product_update(*, product: Product, data: dict[str, Any]) -> Product:
    """Change a product. ``prices`` and ``bundle_items``, when present, replace the whole list
    (prices are matched by (currency, cycle), so unchanged prices keep their ids)."""
    product = Product.all_tenants.select_for_update().get(pk=product.pk)
    data = dict(data)
    prices = data.pop("prices", None)
    items = data.pop("bundle_items", None)
    # ``visibility`` is taken as sent: an update that retires the product is audited as a retirement.
    retiring = data.get("visibility", product.visibility) == Visibility.RETIRED and not product.is_retired
    with audit.change(product, "product.retire" if retiring else "product.update") as change:
        # Its prices and components are other rows: their before and after are recorded beside the fields.
        change.before.update(_rows(product))
        _apply_fields(product, data)
        if not product.slug:
            product.slug = _free_slug(product)
        if retiring:
            _check_retirable(product)
        _save_product(product)
        if prices is not None:
            _replace_prices(product, prices)
        if items is not None:
            _replace_bundle_items(product, items)
        change.mark(**_rows(product))
    return product


@transaction.atomic
def product_retire(*, product: Product) -> Product:
    """Stop selling a product. Existing subscriptions keep it (and ``quote`` still prices it for
    renewals). Refused (409) while a bundle that is not retired contains it."""
    product = Product.all_tenants.select_for_update().get(pk=product.pk)
    if product.is_retired:
        return product
    _check_retirable(product)
    with audit.change(product, "product.retire"):  # its prices and components stay as they are
        product.visibility = Visibility.RETIRED
        product.save(update_fields=["visibility", "updated_at"])
    return product


def product_sold(product: Product) -> bool:
    """Whether another module's rows name the product (a subscription, an order's line): it was sold,
    and those rows must keep pointing at it."""
    for rel in Product._meta.related_objects:
        if rel.related_model._meta.app_label == Product._meta.app_label:
            continue  # its own prices and bundle rows
        if rel.related_model._base_manager.filter(**{rel.field.name: product}).exists():
            return True
    return False


@transaction.atomic
def product_delete(*, product: Product) -> Product | None:
    """Delete a product that was never sold nor bundled; one that was is retired instead, as the
    API only ever retires, so what names it keeps working. Answers the retired product, or None
    when it is gone. A component of a bundle still sold is refused (409), as by ``product_retire``."""
    product = Product.all_tenants.select_for_update().get(pk=product.pk)
    if product_sold(product) or BundleItem.all_tenants.filter(component_id=product.pk).exists():
        return product_retire(product=product)
    audit.deleted(product, "product.delete")
    product.delete()  # its prices and bundle rows with it
    return None


@transaction.atomic
def product_stock_take(*, product: Product, quantity: int = 1) -> Product:
    """Take ``quantity`` units from stock (an order). Unlimited stock (None) is a no-op; too few → 409."""
    _check_quantity(quantity)
    product = Product.all_tenants.select_for_update().get(pk=product.pk)
    if product.stock is None:
        return product
    if product.stock < quantity:
        raise Conflict(f"{product.name} is out of stock ({product.stock} left).", code="out_of_stock")
    with audit.change(product, "product.stock_take"):
        product.stock -= quantity
        product.save(update_fields=["stock", "updated_at"])
    return product


@transaction.atomic
def product_stock_release(*, product: Product, quantity: int = 1) -> Product:
    """Give ``quantity`` units back to stock (a cancelled order). Unlimited stock is a no-op."""
    _check_quantity(quantity)
    product = Product.all_tenants.select_for_update().get(pk=product.pk)
    if product.stock is None:
        return product
    with audit.change(product, "product.stock_release"):
        product.stock += quantity
        product.save(update_fields=["stock", "updated_at"])
    return product


def _check_quantity(quantity) -> None:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidInput("Quantity must be a whole number of at least 1.", field="quantity")


def _check_retirable(product: Product) -> None:
    bundles = list(
        BundleItem.all_tenants.filter(component_id=product.pk)
        .exclude(bundle__visibility=Visibility.RETIRED)
        .values_list("bundle__name", flat=True)[:5]
    )
    if bundles:
        raise Conflict(f"{product.name} is a component of {', '.join(bundles)}: retire or change those bundles first.")


def _apply_fields(product: Product, data: dict[str, Any]) -> None:
    unknown = set(data) - set(Product.audit_fields)
    if unknown:
        raise InvalidInput(f"Unknown product fields: {', '.join(sorted(unknown))}.")
    for name, value in data.items():
        setattr(product, name, value)
    product.name = (product.name or "").strip()
    if not product.name:
        raise InvalidInput("This field may not be blank.", field="name")
    if product.config is None:
        product.config = {}
    if not isinstance(product.config, dict):
        raise InvalidInput("Must be a JSON object.", field="config")
    validators.product_config(product.type, product.config)
    product.metering = _clean_metering(product.metering)


# Usage the platform measures and reports itself (``"meter"`` of a metering rule), by who reports it.
METERS = ("backup_storage",)  # apps/backups: GB its customer's repositories hold, one record a day


def _clean_metering(rule) -> dict | None:
    """None (not metered) or {"unit": str, "unit_prices": {currency: "decimal ≥ 0"}, "meter"?: str}."""
    if rule in (None, {}):
        return None
    if not isinstance(rule, dict):
        raise InvalidInput("Must be a JSON object or null.", field="metering")
    unknown = set(rule) - {"unit", "unit_prices", "meter"}
    if unknown:
        raise InvalidInput(f"Unknown metering keys: {', '.join(sorted(unknown))}.", field="metering")
    unit = rule.get("unit")
    if not isinstance(unit, str) or not unit.strip() or len(unit) > 32:
        raise InvalidInput("'unit' must be a short name such as 'GB' or 'request'.", field="metering")
    prices = rule.get("unit_prices")
    if not isinstance(prices, dict) or not prices:
        raise InvalidInput("'unit_prices' must map currencies to prices per unit.", field="metering")
    clean = {}
    for currency, raw in prices.items():
        if not isinstance(currency, str) or currency.upper() not in CURRENCIES:
            raise InvalidInput(f"Unknown currency {currency!r} in 'unit_prices'.", field="metering")
        if isinstance(raw, float):  # a JSON number (finite: the parser refuses the rest), as written
            raw = repr(raw)
        value = parse_amount(
            raw, currency, field="metering", label=f"The unit price in {currency}", decimals=METERING_DECIMALS
        )
        if value.adjusted() >= 12:
            raise InvalidInput(f"The unit price in {currency} is too large.", field="metering")
        clean[currency.upper()] = f"{value.normalize():f}"
    meter = rule.get("meter")
    if meter is not None and meter not in METERS:
        raise InvalidInput(f"'meter' is one of {', '.join(METERS)} (usage the platform reports).", field="metering")
    return {"unit": unit.strip(), "unit_prices": clean, **({"meter": meter} if meter else {})}


def _free_slug(product: Product) -> str:
    base = slugify(product.name)[:80] or "product"
    taken = set(
        Product.all_tenants.filter(tenant_id=product.tenant_id, slug__startswith=base)
        .exclude(pk=product.pk)
        .values_list("slug", flat=True)
    )
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def _save_product(product: Product) -> None:
    product.full_clean(exclude=["tenant"], validate_constraints=False)
    clash = Product.all_tenants.filter(tenant_id=product.tenant_id, slug=product.slug).exclude(pk=product.pk)
    if clash.exists():
        raise InvalidInput("A product with this slug exists already.", field="slug")
    if not (0 <= product.bundle_discount_percent <= 100):
        raise InvalidInput("Must be between 0 and 100.", field="bundle_discount_percent")
    try:
        with transaction.atomic():
            product.save()
    except IntegrityError as exc:  # a concurrent create with the same slug won the race
        raise InvalidInput("A product with this slug exists already.", field="slug") from exc


def check_prices(prices: list[dict[str, Any]]) -> None:
    """Known currency and cycle, amounts ≥ 0 quantized to the currency, each (currency, cycle) once."""
    seen = set()
    for entry in prices:
        currency, cycle = entry.get("currency"), entry.get("cycle")
        if currency not in CURRENCIES:
            raise InvalidInput(f"Unknown currency {currency!r}.", field="prices")
        if cycle not in Cycle.values:
            raise InvalidInput(f"Unknown billing cycle {cycle!r}.", field="prices")
        if (currency, cycle) in seen:
            raise InvalidInput(f"{currency} {cycle} is priced twice.", field="prices")
        seen.add((currency, cycle))
        if "amount" not in entry:
            raise InvalidInput(f"{currency} {cycle}: the amount is required.", field="prices")
        for name in ("amount", "setup_fee"):
            value = entry.get(name, Decimal(0))
            if not isinstance(value, Decimal) or not value.is_finite():
                raise InvalidInput(f"{name} must be a decimal amount.", field="prices")
            if value < 0:
                raise InvalidInput(f"{currency} {cycle}: {name} must not be negative.", field="prices")
            if not is_quantized(value, currency):
                raise InvalidInput(
                    f"{currency} {cycle}: {name} has more than {exponent(currency)} decimal places.", field="prices"
                )


def _replace_prices(product: Product, prices: list[dict[str, Any]]) -> None:
    check_prices(prices)
    existing = {(p.currency, p.cycle): p for p in Price.all_tenants.filter(product=product)}
    wanted = {(e["currency"], e["cycle"]): e for e in prices}
    gone = [p.pk for key, p in existing.items() if key not in wanted]
    if gone:
        Price.all_tenants.filter(pk__in=gone).delete()
    for key, entry in wanted.items():
        amount, setup = entry["amount"], entry.get("setup_fee", Decimal(0))
        price = existing.get(key)
        if price is None:
            price = Price(tenant=product.tenant, product=product, currency=key[0], cycle=key[1])
        elif price.amount == amount and price.setup_fee == setup:
            continue
        price.amount, price.setup_fee = amount, setup
        price.save()


def _replace_bundle_items(product: Product, items: list[dict[str, Any]]) -> None:
    ids = [item["product"] for item in items]
    if len(set(ids)) != len(ids):
        raise InvalidInput("A component appears twice; use its quantity instead.", field="bundle_items")
    for item in items:
        _check_quantity_field(item.get("quantity", 1))
    components = {
        p.pk: p
        # Locked in a fixed order: a concurrent retire or nesting change waits for us, and we for it.
        for p in Product.all_tenants.select_for_update().filter(tenant_id=product.tenant_id, pk__in=ids).order_by("pk")
    }
    for component_id in ids:
        component = components.get(component_id)
        if component is None:
            raise InvalidInput(f"Unknown product {component_id}.", field="bundle_items")
        problem = bundle_component_problem(bundle=product, component=component)
        if problem:
            raise InvalidInput(problem, field="bundle_items")
    existing = {b.component_id: b for b in BundleItem.all_tenants.filter(bundle=product)}
    gone = [b.pk for cid, b in existing.items() if cid not in components]
    if gone:
        BundleItem.all_tenants.filter(pk__in=gone).delete()
    for item in items:
        quantity = item.get("quantity", 1)
        row = existing.get(item["product"])
        if row is None:
            row = BundleItem(tenant=product.tenant, bundle=product, component=components[item["product"]])
        elif row.quantity == quantity:
            continue
        row.quantity = quantity
        row.save()


def _check_quantity_field(quantity) -> None:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidInput("Each component's quantity must be a whole number of at least 1.", field="bundle_items")


def _rows(product: Product) -> dict[str, Any]:
    """What the product's audit events record of its prices and components (which are other rows)."""
    return {
        "prices": [
            f"{p.currency} {p.cycle} {p.amount} setup {p.setup_fee}"
            for p in Price.all_tenants.filter(product_id=product.pk).order_by("currency", "cycle")
        ],
        "bundle_items": [
            f"{q} x {cid}"
            for cid, q in BundleItem.all_tenants.filter(bundle_id=product.pk)
            .order_by("component_id")
            .values_list("component_id", "quantity")
        ],
    }


# --- tax rates ------------------------------------------------------------------------------------


@transaction.atomic
def tax_rate_create(*, tenant, data: dict[str, Any]) -> TaxRate:
    rate = TaxRate(tenant=tenant, **data)
    _save_tax_rate(rate)
    audit.created(rate, "taxrate.create")
    return rate


@transaction.atomic
def tax_rate_update(*, tax_rate: TaxRate, data: dict[str, Any]) -> TaxRate:
    tax_rate = TaxRate.all_tenants.select_for_update().get(pk=tax_rate.pk)
    with audit.change(tax_rate, "taxrate.update"):
        for name, value in data.items():
            setattr(tax_rate, name, value)
        _save_tax_rate(tax_rate)
    return tax_rate


@transaction.atomic
def tax_rate_delete(*, tax_rate: TaxRate) -> None:
    audit.deleted(tax_rate, "taxrate.delete")
    tax_rate.delete()


def _save_tax_rate(rate: TaxRate) -> None:
    rate.name = (rate.name or "").strip()
    rate.full_clean(exclude=["tenant"], validate_constraints=False)
    if not (0 <= rate.rate <= 100):
        raise InvalidInput("Must be between 0 and 100.", field="rate")
    clash = TaxRate.all_tenants.filter(tenant_id=rate.tenant_id, country=rate.country, tax_class=rate.tax_class)
    if clash.exclude(pk=rate.pk).exists():
        raise InvalidInput("A rate for this country and tax class exists already.", field="country")
    try:
        with transaction.atomic():
            rate.save()
    except IntegrityError as exc:
        raise InvalidInput("A rate for this country and tax class exists already.", field="country") from exc
