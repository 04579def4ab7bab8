"""Property tests of the money rules (hypothesis)."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.billing import amounts
from apps.common.exceptions import InvalidInput
from apps.common.money import exponent, quantize

CURRENCIES = ["EUR", "USD", "JPY", "KWD", "GBP"]
quantities = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("10000"), places=4)
prices = st.decimals(min_value=Decimal("0"), max_value=Decimal("100000"), places=4)
rates = st.decimals(min_value=Decimal("0"), max_value=Decimal("100"), places=2)


def minor(currency):
    return Decimal(1).scaleb(-exponent(currency))


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.tuples(quantities, prices, rates), min_size=1, max_size=8),
    currency=st.sampled_from(CURRENCIES),
)
def test_totals_are_the_sum_of_rounded_lines(lines, currency):
    computed = [
        amounts.line_amounts(quantity=q, unit_price=p, discount=Decimal(0), tax_rate=r, currency=currency)
        for q, p, r in lines
    ]
    t = amounts.totals(computed)
    assert t.total == t.subtotal - t.discount_total + t.tax_total
    assert t.subtotal == sum(x.amount for x in computed)
    for x, (q, p, r) in zip(computed, lines, strict=True):
        assert quantize(x.amount, currency) == x.amount and quantize(x.tax, currency) == x.tax
        assert abs(x.amount - q * p) <= minor(currency) / 2  # half-up rounding error is at most half a unit
        assert abs(x.tax - x.amount * r / 100) <= minor(currency) / 2
        assert x.tax >= 0 and x.total == x.amount + x.tax


@settings(max_examples=200, deadline=None)
@given(q=quantities, p=prices, r=rates, share=st.decimals(min_value=0, max_value=1, places=3),
       currency=st.sampled_from(CURRENCIES))  # fmt: skip
def test_discount_never_exceeds_the_line_and_tax_is_on_the_net(q, p, r, share, currency):
    gross = quantize(q * p, currency)
    discount = quantize(gross * share, currency)
    x = amounts.line_amounts(quantity=q, unit_price=p, discount=discount, tax_rate=r, currency=currency)
    assert x.total == x.amount - x.discount + x.tax
    assert x.tax == quantize((x.amount - x.discount) * r / 100, currency)
    with pytest.raises(InvalidInput):
        amounts.line_amounts(quantity=q, unit_price=p, discount=gross + minor(currency), tax_rate=r, currency=currency)


@settings(max_examples=200, deadline=None)
@given(value=st.integers(min_value=0, max_value=10**12), currency=st.sampled_from(CURRENCIES))
def test_minor_units_round_trip(value, currency):
    assert amounts.to_minor_units(amounts.from_minor_units(value, currency), currency) == value


def test_half_up_not_bankers():
    x = amounts.line_amounts(quantity=Decimal(1), unit_price=Decimal("0.125"), discount=Decimal(0),
                             tax_rate=Decimal(0), currency="EUR")  # fmt: skip
    assert x.amount == Decimal("0.13")
