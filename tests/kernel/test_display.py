"""How values are shown to people: money with its currency's symbol and digits, badges, times."""

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.common import display


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (Decimal("21.9900"), "EUR", "€21.99"),
        ("9.990", "USD", "$9.99"),
        (Decimal("1234567.5"), "USD", "$1,234,567.50"),
        (Decimal("2000"), "JPY", "¥2,000"),
        (Decimal("1.5"), "BHD", "BHD1.500"),
        (Decimal("-3.10"), "GBP", "-£3.10"),
        (Decimal("0"), "CHF", "CHF0.00"),
        (None, "USD", "—"),
        (Decimal("5"), "ZZZ", "5 ZZZ"),
    ],
)
def test_money_has_its_currencys_symbol_and_digits(amount, currency, shown):
    assert display.money(amount, currency).replace("\xa0", "") == shown


def test_money_follows_the_display_locale(settings):
    settings.MPANEL_DISPLAY_LOCALE = "de_DE"
    assert display.money(Decimal("1234.5"), "EUR").replace("\xa0", " ") == "1.234,50 €"


@pytest.mark.parametrize(
    ("status", "tone"),
    [
        ("paid", "good"),
        ("past_due", "warn"),
        ("error", "bad"),
        ("pending", "wait"),
        ("void", "off"),
        ("odd", "neutral"),
    ],
)
def test_badges_have_a_tone_per_kind_of_state(status, tone):
    html = display.badge(status)
    assert f'class="mp-badge mp-badge-{tone}"' in html and f'data-status="{status}"' in html


def test_a_badge_escapes_its_label():
    assert "<script>" not in display.badge("x", "<script>")


def test_times_are_shown_to_the_minute_in_the_current_zone(settings):
    settings.TIME_ZONE = "UTC"
    moment = datetime.datetime(2026, 12, 3, 9, 5, 7, 123456, tzinfo=datetime.UTC)
    with timezone.override("Europe/Berlin"):
        assert display.when(moment) == "3 Dec 2026, 10:05"
    assert display.when(datetime.date(2026, 1, 9)) == "9 Jan 2026"
    assert display.when(None) == "—"
