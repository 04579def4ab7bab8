"""How values are shown to people (the admin, e-mails, the portal): one formatter per kind of value.

Money with its currency's symbol and digits (``€21.99``, ``¥2,000``, ``BHD 1.500``; CLDR data through
Babel), statuses as coloured badges, times to the minute in the viewer's time zone.
"""

from __future__ import annotations

import copy
import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from babel import Locale
from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .money import CURRENCIES

EMPTY = "—"

# A badge's tone by status word, across modules (unknown words are neutral).
TONES: dict[str, str] = {
    **dict.fromkeys(
        ("active", "running", "paid", "succeeded", "verified", "issued", "accepted", "completed", "valid", "ok"),
        "good",
    ),
    **dict.fromkeys(
        (
            "pending",
            "provisioning",
            "resizing",
            "draft",
            "open",
            "trialing",
            "processing",
            "running_job",
            "queued",
            "renewing",
            "unverified",
            "scheduled",
            "deleting",
            "removing",
        ),
        "wait",
    ),
    **dict.fromkeys(("suspended", "past_due", "overdue", "draining", "maintenance", "expiring", "warning"), "warn"),
    **dict.fromkeys(("error", "failed", "offline", "uncollectible", "expired", "critical", "refused"), "bad"),
    **dict.fromkeys(("cancelled", "canceled", "void", "deleted", "retired", "refunded", "inactive"), "off"),
}


def money(amount: Any, currency: str | None) -> str:
    """``amount`` in ``currency`` as people read it: symbol, grouping, and exactly the currency's digits."""
    if amount is None or amount == "":
        return EMPTY
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return str(amount)
    code = (currency or "").upper()
    if code not in CURRENCIES:
        return f"{value} {code}".strip()
    locale = Locale.parse(settings.MPANEL_DISPLAY_LOCALE)
    # The locale's layout (symbol side, separators) with our currency table's digits, which are the
    # ones amounts are stored and charged in (CLDR's differ for a few currencies).
    pattern = copy.copy(locale.currency_formats["standard"])
    pattern.frac_prec = (CURRENCIES[code], CURRENCIES[code])
    return pattern.apply(value, locale, currency=code, currency_digits=False)


def tone(status: str | None) -> str:
    return TONES.get(str(status or "").lower(), "neutral")


def badge(status: str | None, label: str | None = None) -> SafeString:
    """A coloured badge for a status word (``label`` defaults to the word, spaced and capitalised)."""
    if status in (None, ""):
        return format_html("{}", EMPTY)
    text = label if label is not None else str(status).replace("_", " ").capitalize()
    return format_html('<span class="mp-badge mp-badge-{}" data-status="{}">{}</span>', tone(status), status, text)


def when(value: datetime.datetime | datetime.date | None) -> str:
    """A date, or a time to the minute in the current time zone (no seconds, no microseconds)."""
    if value is None:
        return EMPTY
    if isinstance(value, datetime.datetime):
        if timezone.is_aware(value):
            value = timezone.localtime(value)
        return value.strftime("%-d %b %Y, %H:%M")
    return value.strftime("%-d %b %Y")
