"""Property tests (hypothesis) of the catalog's money rules; pure functions, no database."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.catalog.models import CYCLE_MONTHS, is_quantized
from apps.catalog.pricing import bundle_amount, effective_monthly, quote_from, tax_on
from apps.common.money import exponent

CURRENCIES = ["EUR", "USD", "JPY", "KRW", "KWD", "BHD", "GBP"]
RECURRING_CYCLES = [c for c, m in CYCLE_MONTHS.items() if m is not None]


def minor(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent(currency))


@st.composite
def money(draw, currency: str, max_minor: int = 10**12) -> Decimal:
    """An amount already quantized to the currency's minor unit (as stored prices are)."""
    return Decimal(draw(st.integers(min_value=0, max_value=max_minor))) * minor(currency)


rates = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)
percents = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=300)
@given(data=st.data(), currency=st.sampled_from(CURRENCIES), cycle=st.sampled_from(RECURRING_CYCLES))
def test_effective_monthly_times_months_is_within_half_a_minor_unit_per_month(data, currency, cycle):
    amount = data.draw(money(currency))
    months = CYCLE_MONTHS[cycle]
    monthly = effective_monthly(amount, cycle, currency)
    assert is_quantized(monthly, currency)
    assert abs(monthly * months - amount) <= months * minor(currency) / 2


def test_effective_monthly_rounds_half_up_and_one_time_has_none():
    assert effective_monthly(Decimal("0.18"), "triennial", "EUR") == Decimal("0.01")  # 0.005
    assert effective_monthly(Decimal("18"), "triennial", "JPY") == Decimal("1")  # 0.5
    assert effective_monthly(Decimal("0.018"), "triennial", "KWD") == Decimal("0.001")  # 0.0005
    assert effective_monthly(Decimal("5"), "onetime", "EUR") is None


@settings(max_examples=300)
@given(data=st.data(), currency=st.sampled_from(CURRENCIES), rate=rates)
def test_tax_is_quantized_and_within_half_a_minor_unit(data, currency, rate):
    amount = data.draw(money(currency))
    tax = tax_on(amount, rate, currency)
    assert is_quantized(tax, currency)
    assert abs(tax - amount * rate / 100) <= minor(currency) / 2
    assert tax >= 0


@settings(max_examples=300)
@given(
    data=st.data(),
    currency=st.sampled_from(CURRENCIES),
    rate=rates,
    quantity=st.integers(min_value=1, max_value=10_000),
)
def test_quote_totals_are_the_sum_of_their_rounded_parts(data, currency, rate, quantity):
    unit = data.draw(money(currency, 10**9))
    setup = data.draw(money(currency, 10**9))
    q = quote_from(
        product_id=None,
        currency=currency,
        cycle="monthly",
        quantity=quantity,
        unit_price=unit,
        setup_fee=setup,
        tax_rate=rate,
    )
    for value in (q.unit_price, q.setup_fee, q.recurring_subtotal, q.setup_subtotal, q.subtotal, q.tax, q.total):
        assert is_quantized(value, currency)
    assert q.recurring_subtotal == unit * quantity  # exact: no rounding of quantized x whole
    assert q.setup_subtotal == setup * quantity
    assert q.subtotal == q.recurring_subtotal + q.setup_subtotal
    assert q.tax == q.recurring_tax + q.setup_tax
    assert q.total == q.subtotal + q.tax
    assert q.recurring_tax == tax_on(q.recurring_subtotal, rate, currency)  # per line
    # Rounding per line is at most one minor unit (half per line) away from taxing the sum.
    assert abs(q.tax - q.subtotal * rate / 100) <= minor(currency)


@settings(max_examples=300)
@given(
    data=st.data(),
    currency=st.sampled_from(CURRENCIES),
    percent=percents,
    quantities=st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=5),
)
def test_bundle_price_is_the_components_total_minus_a_rounded_discount(data, currency, percent, quantities):
    parts = [(q, data.draw(money(currency, 10**9))) for q in quantities]
    total, price = bundle_amount(parts, percent, currency)
    assert total == sum(q * a for q, a in parts)
    assert is_quantized(total, currency) and is_quantized(price, currency)
    assert 0 <= price <= total
    assert abs((total - price) - total * percent / 100) <= minor(currency) / 2
    if percent == 0:
        assert price == total
    if percent == 100:
        assert price == 0
