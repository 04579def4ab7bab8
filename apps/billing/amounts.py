"""Invoice arithmetic, pure and documented.

Rounding rule: every line is rounded on its own, half-up to the currency's minor unit. Prices
exclusive of tax (net, the default):
    amount = round(quantity x unit_price)
    tax    = round((amount - discount) x tax_rate / 100)
    total  = amount - discount + tax
Prices inclusive of tax (gross: the tenant's ``prices_include_tax``), the customer pays the price:
    total  = round(quantity x unit_price) - discount
    tax    = round(total x tax_rate / (100 + tax_rate))
    amount = total - tax + discount          (the net amount before the discount)
so ``total = amount - discount + tax`` holds for both, and everything below sums the same way.
and the invoice's figures are the sums of its lines' (so the totals always equal the sum of the
parts): total = subtotal - discounts + tax.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from apps.common.exceptions import InvalidInput
from apps.common.money import exponent, parse_amount, quantize

HUNDRED = Decimal(100)
ZERO = Decimal(0)


@dataclass(frozen=True)
class LineAmounts:
    amount: Decimal
    discount: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    discount_total: Decimal
    tax_total: Decimal
    total: Decimal


def line_amounts(*, quantity: Decimal, unit_price: Decimal, discount: Decimal, tax_rate: Decimal, currency: str,
                 prices_include_tax: bool = False) -> LineAmounts:  # fmt: skip
    if quantity <= 0:
        raise InvalidInput("Quantity must be more than zero.", field="quantity")
    if unit_price < 0:
        raise InvalidInput("Unit price cannot be negative; use a credit note.", field="unit_price")
    if not ZERO <= tax_rate <= HUNDRED:
        raise InvalidInput("Tax rate is a percentage between 0 and 100.", field="tax_rate")
    if discount < 0:
        raise InvalidInput("Discount cannot be negative.", field="discount")
    amount = quantize(quantity * unit_price, currency)
    discount = quantize(discount, currency)
    if discount > amount:
        raise InvalidInput("Discount cannot be larger than the line's amount.", field="discount")
    if prices_include_tax:
        total = amount - discount
        tax = quantize(total * tax_rate / (HUNDRED + tax_rate), currency)
        return LineAmounts(amount=total - tax + discount, discount=discount, tax=tax, total=total)
    tax = quantize((amount - discount) * tax_rate / HUNDRED, currency)
    return LineAmounts(amount=amount, discount=discount, tax=tax, total=amount - discount + tax)


def totals(lines: Iterable[LineAmounts]) -> Totals:
    lines = list(lines)
    subtotal = sum((x.amount for x in lines), ZERO)
    discounts = sum((x.discount for x in lines), ZERO)
    tax = sum((x.tax for x in lines), ZERO)
    return Totals(subtotal=subtotal, discount_total=discounts, tax_total=tax, total=subtotal - discounts + tax)


def to_minor_units(amount: Decimal, currency: str) -> int:
    return int(quantize(amount, currency).scaleb(exponent(currency)))


def from_minor_units(value: int, currency: str, *, field: str = "amount") -> Decimal:
    """A provider's integer of minor units as an amount, held to the money rule (parse_amount)."""
    return parse_amount(Decimal(int(value)).scaleb(-exponent(currency)), currency, field=field)


def tax_for_net(net: Decimal, tax_rate: Decimal, currency: str) -> Decimal:
    return quantize(net * tax_rate / HUNDRED, currency)
