"""Billing periods and proration, pure and documented.

Periods are half-open date ranges [start, end). A subscription keeps its anchor day (the day of
the month it started on); each period starts on that day, clamped to the month's length, so
31 Jan -> 28/29 Feb -> 31 Mar and a 29 Feb start bills on 28 Feb in other years. Periods tile:
each one ends where the next starts, with no gap and no overlap.

Proration is by day at a fixed date ``on`` (so a preview equals the real change):
    fraction = days left in the period from ``on`` / days in the period
    net      = round((new - old) x fraction)       the change the customer pays (or gets back)
    credit   = round(old x fraction)               for the unused part of the old price
    charge   = credit + net                        for the rest of the period at the new price
so credit and charge always add up to the expected net to the cent.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from apps.common.money import quantize

CYCLE_MONTHS = {"monthly": 1, "quarterly": 3, "semiannual": 6, "annual": 12, "biennial": 24, "triennial": 36}
RECURRING_CYCLES = list(CYCLE_MONTHS)


def add_months(start: date, months: int, anchor_day: int | None = None) -> date:
    anchor_day = anchor_day or start.day
    month_index = start.year * 12 + (start.month - 1) + months
    year, month = divmod(month_index, 12)
    month += 1
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


def period_containing(*, anchor: date, cycle: str, on: date) -> tuple[date, date]:
    """The period [start, end) of a subscription anchored at ``anchor`` that contains ``on``."""
    months = CYCLE_MONTHS[cycle]
    if on < anchor:
        raise ValueError("the date is before the subscription's start")
    # Jump close, then step: months between anchor and on, rounded down to whole cycles.
    k = max(0, ((on.year - anchor.year) * 12 + on.month - anchor.month) // months - 1)
    start = add_months(anchor, k * months, anchor.day)
    while True:
        end = add_months(anchor, (k + 1) * months, anchor.day)
        if start <= on < end:
            return start, end
        k += 1
        start = end


def next_period(*, anchor: date, cycle: str, current_end: date) -> tuple[date, date]:
    return period_containing(anchor=anchor, cycle=cycle, on=current_end)


@dataclass(frozen=True)
class Proration:
    fraction: Decimal
    credit: Decimal
    charge: Decimal
    net: Decimal


def prorate(*, old: Decimal, new: Decimal, start: date, end: date, on: date, currency: str) -> Proration:
    if not start <= on <= end:
        raise ValueError("the change date is outside the period")
    total = Decimal((end - start).days)
    left = Decimal((end - on).days)
    # Multiply before dividing: 2.25 x 1/30 must round from 0.075, not from 0.07499… of a rounded 1/30.
    net = quantize((new - old) * left / total, currency)
    credit = quantize(old * left / total, currency)
    return Proration(fraction=left / total, credit=credit, charge=credit + net, net=net)
