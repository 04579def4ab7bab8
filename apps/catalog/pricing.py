"""Price computation: pure functions of a product's stored prices (no writes, Decimal only).

Rules (also in docs/modules/catalog.md):

- Every amount is a ``Decimal`` quantized to its currency's minor unit (``apps.common.money``);
  a float never enters. Rounding is always ROUND_HALF_UP to the minor unit.
- Effective monthly = recurring / months in the cycle, rounded half-up (none for one-time prices).
- Bundles: for a (currency, cycle) where the bundle has its **own explicit price, that price wins**.
  Otherwise, when every component has a price for that (currency, cycle), the bundle costs the sum
  of its components' recurring amounts x quantities minus ``bundle_discount_percent`` of that sum
  (the discount rounded half-up to the minor unit); setup fees are the components' setup fees x
  quantities, summed, not discounted. ``bundle_discount`` = components' total - the bundle's price.
- Tax is computed **per line**: tax = round_half_up(line amount x rate / 100) for the recurring line
  and, separately, for the setup-fee line; totals are the sum of those rounded parts. The rate is the
  tenant's ``TaxRate`` for (country, product's tax class); zero-rated and exempt classes, and a
  country without a configured rate, pay 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation

from django_countries import countries

from apps.common.exceptions import InvalidInput
from apps.common.money import CURRENCIES, quantize

from .models import CYCLE_MONTHS, CYCLE_ORDER, RATED_TAX_CLASSES, BundleItem, Cycle, Price, Product, TaxRate

HUNDRED = Decimal(100)
ZERO = Decimal(0)


# --- the arithmetic (pure; property-tested) ------------------------------------------------------


def effective_monthly(amount: Decimal, cycle: str, currency: str) -> Decimal | None:
    """``amount`` per cycle as a monthly amount, rounded half-up to minor units; None when one-time."""
    months = CYCLE_MONTHS[cycle]
    if months is None:
        return None
    return quantize(Decimal(amount) / months, currency)


def tax_on(amount: Decimal, rate: Decimal, currency: str) -> Decimal:
    """Tax on one line: round_half_up(amount x rate / 100) to the currency's minor unit."""
    return quantize(Decimal(amount) * Decimal(rate) / HUNDRED, currency)


def bundle_amount(parts: list[tuple[int, Decimal]], percent: Decimal, currency: str) -> tuple[Decimal, Decimal]:
    """(components' total, bundle price) for ``parts`` = [(quantity, unit amount)] and a discount percent."""
    total = quantize(sum((Decimal(q) * Decimal(a) for q, a in parts), ZERO), currency)
    discount = quantize(total * Decimal(percent) / HUNDRED, currency)
    return total, total - discount


# --- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tax:
    country: str
    rate: Decimal  # percent; 0 when exempt, zero-rated or not configured
    name: str | None  # the TaxRate's name, None when no rate applies


@dataclass(frozen=True)
class PriceRow:
    currency: str
    cycle: str
    months: int | None
    recurring: Decimal
    setup_fee: Decimal
    effective_monthly: Decimal | None
    source: str  # "explicit" (a Price row of the product) or "bundle" (computed from the components)
    components_total: Decimal | None = None  # bundles: sum of component recurring x quantity
    components_setup_total: Decimal | None = None
    bundle_discount: Decimal | None = None  # bundles: components_total - recurring
    recurring_tax: Decimal | None = None  # with a country only
    setup_fee_tax: Decimal | None = None
    recurring_total: Decimal | None = None  # recurring + recurring_tax
    setup_fee_total: Decimal | None = None


@dataclass(frozen=True)
class PriceTable:
    product_id: object
    tax_class: str
    tax: Tax | None
    rows: list[PriceRow] = field(default_factory=list)

    def row(self, currency: str, cycle: str) -> PriceRow | None:
        for r in self.rows:
            if r.currency == currency and r.cycle == cycle:
                return r
        return None

    def as_dict(self) -> dict:
        return asdict(self)


def normalize_country(country: str | None) -> str | None:
    if country in (None, ""):
        return None
    code = str(country).strip().upper()
    if code not in dict(countries):
        raise InvalidInput(f"Unknown country code {country!r} (ISO 3166-1 alpha-2).", field="country")
    return code


def normalize_currency(currency: str) -> str:
    code = str(currency or "").strip().upper()
    if code not in CURRENCIES:
        raise InvalidInput(f"Unknown currency {currency!r}.", field="currency")
    return code


def normalize_cycle(cycle: str) -> str:
    if cycle not in Cycle.values:
        raise InvalidInput(f"Unknown billing cycle {cycle!r}; one of {', '.join(Cycle.values)}.", field="cycle")
    return cycle


def tax_for(product: Product, country: str | None) -> Tax | None:
    """The tax that applies to ``product`` sold to ``country`` (None when no country is given)."""
    country = normalize_country(country)
    if country is None:
        return None
    if product.tax_class not in RATED_TAX_CLASSES:
        return Tax(country=country, rate=ZERO, name=None)
    rate = (
        TaxRate.all_tenants.filter(tenant_id=product.tenant_id, country=country, tax_class=product.tax_class)
        .only("rate", "name")
        .first()
    )
    if rate is None:
        return Tax(country=country, rate=ZERO, name=None)
    return Tax(country=country, rate=rate.rate, name=rate.name)


def _related(obj, name: str, fallback):
    """``obj.<name>.all()`` from the prefetch cache when there is one, else ``fallback`` (a query by
    explicit ids, so that the pricing functions also work outside a tenant scope, e.g. in a task)."""
    cached = getattr(obj, "_prefetched_objects_cache", {})
    return list(cached[name]) if name in cached else list(fallback)


def _prices_of(product: Product) -> list[Price]:
    return _related(product, "prices", Price.all_tenants.filter(product_id=product.pk))


def _items_of(product: Product) -> list[BundleItem]:
    return _related(
        product, "bundle_items", BundleItem.all_tenants.filter(bundle_id=product.pk).select_related("component")
    )


def _base_rows(product: Product) -> list[PriceRow]:
    """The rows before tax. Reads ``product.prices`` and ``bundle_items__component__prices``
    (prefetch them for lists; see ``api.with_prices``)."""
    explicit = {(p.currency, p.cycle): p for p in _prices_of(product)}
    items = _items_of(product)
    computed: dict[tuple[str, str], tuple[Decimal, Decimal, Decimal, Decimal]] = {}
    if items:
        per_item = [(item.quantity, {(p.currency, p.cycle): p for p in _prices_of(item.component)}) for item in items]
        keys = set.intersection(*(set(prices) for _q, prices in per_item))
        for currency, cycle in keys:
            total, price = bundle_amount(
                [(q, prices[(currency, cycle)].amount) for q, prices in per_item],
                product.bundle_discount_percent,
                currency,
            )
            setup_total, _ = bundle_amount(
                [(q, prices[(currency, cycle)].setup_fee) for q, prices in per_item], ZERO, currency
            )
            computed[(currency, cycle)] = (total, price, setup_total, setup_total)

    rows = []
    for currency, cycle in sorted(set(explicit) | set(computed), key=lambda k: (k[0], CYCLE_ORDER[k[1]])):
        bundle = computed.get((currency, cycle))
        if (currency, cycle) in explicit:
            p = explicit[(currency, cycle)]
            recurring, setup, source = quantize(p.amount, currency), quantize(p.setup_fee, currency), "explicit"
        else:
            recurring, setup, source = bundle[1], bundle[3], "bundle"
        rows.append(
            PriceRow(
                currency=currency,
                cycle=cycle,
                months=CYCLE_MONTHS[cycle],
                recurring=recurring,
                setup_fee=setup,
                effective_monthly=effective_monthly(recurring, cycle, currency),
                source=source,
                components_total=bundle[0] if bundle else None,
                components_setup_total=bundle[2] if bundle else None,
                bundle_discount=(bundle[0] - recurring) if bundle else None,
            )
        )
    return rows


def _with_tax(row: PriceRow, tax: Tax) -> PriceRow:
    recurring_tax = tax_on(row.recurring, tax.rate, row.currency)
    setup_tax = tax_on(row.setup_fee, tax.rate, row.currency)
    return PriceRow(
        **{
            **asdict(row),
            "recurring_tax": recurring_tax,
            "setup_fee_tax": setup_tax,
            "recurring_total": row.recurring + recurring_tax,
            "setup_fee_total": row.setup_fee + setup_tax,
        }
    )


def price_table(product: Product, *, country: str | None = None) -> PriceTable:
    """The computed price table of ``product``: one row per (currency, cycle) it can be bought in,
    with tax for ``country`` (ISO 3166-1 alpha-2) when given. See the module docstring for the rules."""
    tax = tax_for(product, country)
    rows = _base_rows(product)
    if tax is not None:
        rows = [_with_tax(r, tax) for r in rows]
    return PriceTable(product_id=product.pk, tax_class=product.tax_class, tax=tax, rows=rows)


# --- quotes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """What ``quantity`` units of a product cost for one cycle in one currency (invoices and orders)."""

    product_id: object
    currency: str
    cycle: str
    quantity: int
    unit_price: Decimal  # recurring amount per unit and cycle
    setup_fee: Decimal  # per unit, charged once
    recurring_subtotal: Decimal  # unit_price x quantity
    setup_subtotal: Decimal  # setup_fee x quantity
    subtotal: Decimal  # recurring_subtotal + setup_subtotal
    tax_rate: Decimal  # percent
    tax_name: str | None
    recurring_tax: Decimal  # tax on the recurring line, rounded half-up
    setup_tax: Decimal  # tax on the setup line, rounded half-up
    tax: Decimal  # recurring_tax + setup_tax
    total: Decimal  # subtotal + tax


def quote(product: Product, cycle: str, currency: str, quantity: int = 1, country: str | None = None) -> Quote:
    """Price ``quantity`` units of ``product`` for ``cycle`` in ``currency``, taxed for ``country``.

    Raises ``InvalidInput`` (400) for an unknown currency, cycle or country, a quantity below 1, or a
    product without a price for that (currency, cycle). It does not look at visibility or stock:
    renewals of a retired product still price; orders check ``product.is_orderable`` themselves.
    """
    currency = normalize_currency(currency)
    cycle = normalize_cycle(cycle)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidInput("Quantity must be a whole number of at least 1.", field="quantity")
    tax = tax_for(product, country)
    row = next((r for r in _base_rows(product) if r.currency == currency and r.cycle == cycle), None)
    if row is None:
        raise InvalidInput(f"{product.name} has no {cycle} price in {currency}.", field="cycle", code="no_price")
    return quote_from(
        product_id=product.pk,
        currency=currency,
        cycle=cycle,
        quantity=quantity,
        unit_price=row.recurring,
        setup_fee=row.setup_fee,
        tax_rate=tax.rate if tax else ZERO,
        tax_name=tax.name if tax else None,
    )


def quote_from(
    *,
    product_id,
    currency: str,
    cycle: str,
    quantity: int,
    unit_price: Decimal,
    setup_fee: Decimal,
    tax_rate: Decimal,
    tax_name: str | None = None,
) -> Quote:
    """The arithmetic of ``quote`` (pure): two lines (recurring, setup), each taxed and rounded."""
    recurring_subtotal = quantize(unit_price * quantity, currency)
    setup_subtotal = quantize(setup_fee * quantity, currency)
    recurring_tax = tax_on(recurring_subtotal, tax_rate, currency)
    setup_tax = tax_on(setup_subtotal, tax_rate, currency)
    subtotal = recurring_subtotal + setup_subtotal
    tax = recurring_tax + setup_tax
    return Quote(
        product_id=product_id,
        currency=currency,
        cycle=cycle,
        quantity=quantity,
        unit_price=quantize(unit_price, currency),
        setup_fee=quantize(setup_fee, currency),
        recurring_subtotal=recurring_subtotal,
        setup_subtotal=setup_subtotal,
        subtotal=subtotal,
        tax_rate=Decimal(tax_rate),
        tax_name=tax_name,
        recurring_tax=recurring_tax,
        setup_tax=setup_tax,
        tax=tax,
        total=subtotal + tax,
    )


# --- metered usage --------------------------------------------------------------------------------


def usage_charge(product: Product, *, currency: str, quantity: Decimal) -> Decimal:
    """The charge for ``quantity`` metered units of ``product`` in ``currency`` (before tax):
    round_half_up(quantity x the metering rule's unit price) to the currency's minor unit."""
    currency = normalize_currency(currency)
    rule = product.metering or {}
    unit_prices = rule.get("unit_prices") or {}
    if currency not in unit_prices:
        raise InvalidInput(f"{product.name} has no metered price in {currency}.", field="currency")
    try:
        quantity = Decimal(str(quantity))
    except InvalidOperation as exc:
        raise InvalidInput("Quantity must be a number.", field="quantity") from exc
    if not quantity.is_finite() or quantity < 0:
        raise InvalidInput("Quantity must be zero or more.", field="quantity")
    return quantize(quantity * Decimal(unit_prices[currency]), currency)
