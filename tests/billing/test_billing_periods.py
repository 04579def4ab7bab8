import calendar
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.billing.periods import CYCLE_MONTHS, add_months, period_containing, prorate
from apps.common.money import quantize


def test_proration_rounds_the_exact_value_half_up():
    p = prorate(old=Decimal("0.00"), new=Decimal("2.25"), start=date(2026, 4, 1), end=date(2026, 5, 1),
                on=date(2026, 4, 30), currency="EUR")  # fmt: skip
    assert p.net == Decimal("0.08")  # 2.25 x 1/30 = 0.075 exactly


def test_month_end_anchor_clamps_and_comes_back():
    anchor = date(2026, 1, 31)
    starts = [add_months(anchor, m, 31) for m in range(4)]
    assert starts == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)]
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)


def test_leap_day_anniversary_bills_on_the_28th():
    anchor = date(2024, 2, 29)
    assert period_containing(anchor=anchor, cycle="annual", on=date(2025, 3, 1)) == (
        date(2025, 2, 28),
        date(2026, 2, 28),
    )
    assert period_containing(anchor=anchor, cycle="annual", on=date(2028, 2, 29)) == (
        date(2028, 2, 29),
        date(2029, 2, 28),
    )


@settings(max_examples=300, deadline=None)
@given(
    anchor=st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    cycle=st.sampled_from(sorted(CYCLE_MONTHS)),
    offset=st.integers(min_value=0, max_value=4000),
)
def test_periods_tile_without_gap_or_overlap(anchor, cycle, offset):
    on = anchor + timedelta(days=offset)
    start, end = period_containing(anchor=anchor, cycle=cycle, on=on)
    assert start <= on < end
    nxt_start, nxt_end = period_containing(anchor=anchor, cycle=cycle, on=end)
    assert nxt_start == end and nxt_end > nxt_start
    if start > anchor:
        _prev_start, prev_end = period_containing(anchor=anchor, cycle=cycle, on=start - timedelta(days=1))
        assert prev_end == start
    # Every period starts on the anchor day, clamped to the month's length.
    assert start.day == min(anchor.day, calendar.monthrange(start.year, start.month)[1])


@settings(max_examples=300, deadline=None)
@given(
    days=st.sampled_from([28, 29, 30, 31]),
    used=st.integers(min_value=0, max_value=31),
    old=st.decimals(min_value=0, max_value=10000, places=2),
    new=st.decimals(min_value=0, max_value=10000, places=2),
)
def test_proration_credit_plus_charge_is_the_net_to_the_cent(days, used, old, new):
    start = date(2026, 1, 1)
    end = start + timedelta(days=days)
    on = start + timedelta(days=min(used, days))
    p = prorate(old=old, new=new, start=start, end=end, on=on, currency="EUR")
    assert p.charge - p.credit == p.net
    expected = quantize((new - old) * Decimal((end - on).days) / Decimal(days), "EUR")  # exact, then rounded
    assert p.net == expected
    assert 0 <= p.credit <= old
    if on == start:
        assert p.credit == old and p.charge == new
    if on == end:
        assert p.credit == p.charge == p.net == 0
