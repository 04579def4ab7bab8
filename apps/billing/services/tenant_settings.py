"""A tenant's billing settings: numbering, terms, dunning, currencies and the payment methods offered.

One service writes them, for the API (``PUT|PATCH /billing/settings``) and the admin's form alike:
every field sent is checked (a 400 names it), the row is locked, and the change is audited
(``billing_settings.update``). Fields left out keep their value.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.money import check_currency

from ..models import BillingSettings, PaymentMethod
from ..validators import validate_number_format

MAX_DAYS = 365
MAX_LEAD_DAYS = 90
MAX_STEPS = 10
NUMBER_MAX_LENGTH = 64  # Invoice.number and CreditNote.number
# The highest sequence number the uniqueness check renders (a billion documents in one period).
SAMPLE_SEQS = (*range(1, 1201), 9_999, 10_000, 99_999, 100_000, 999_999, 1_000_000, 999_999_999)

FIELDS = (
    "invoice_number_format", "credit_note_number_format", "payment_terms_days", "lead_days",
    "reminder_days_before", "reminder_days_after", "suspend_after_days", "terminate_after_days",
    "currencies", "payment_methods", "prices_include_tax",
)  # fmt: skip


def settings_of(tenant) -> BillingSettings:
    """The tenant's settings as they apply now (the defaults, unsaved, until first changed)."""
    tenant_id = getattr(tenant, "pk", tenant)
    return BillingSettings.objects.filter(tenant_id=tenant_id).first() or BillingSettings(tenant_id=tenant_id)


def check_number_format(fmt: Any, *, field: str) -> str:
    """A format whose numbers are unique: ``{seq}`` present, nothing unknown, and no two documents of
    one series render alike (the sequence restarts each year when the format has ``{year}``, never
    otherwise, so ``{seq}{month}`` is refused: the 11th in February and the 1st in December are "112")."""
    if not isinstance(fmt, str) or not fmt.strip():
        raise InvalidInput("A number format is text, e.g. INV-{year}-{seq:06}.", field=field)
    try:
        validate_number_format(fmt)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=field) from exc
    yearly = "{year" in fmt
    seen: dict[str, tuple[int, int]] = {}
    for year in (2026, 2027):
        for month in range(1, 13):
            for seq in SAMPLE_SEQS:
                number = fmt.format(year=year, month=month, seq=seq)
                key = (year if yearly else 0, seq)
                other = seen.setdefault(number, key)
                if other != key:
                    raise InvalidInput(
                        f"This format cannot give unique numbers: two documents would both be {number!r}. "
                        "Put a separator or a fixed width around {seq}, e.g. {seq:06}.",
                        field=field,
                    )
    longest = fmt.format(year=9999, month=12, seq=999_999_999)
    if len(longest) > NUMBER_MAX_LENGTH or len(fmt) > NUMBER_MAX_LENGTH:
        raise InvalidInput(f"Numbers of this format would be longer than {NUMBER_MAX_LENGTH} characters.", field=field)
    return fmt


def _days(value: Any, *, field: str, low: int = 0, high: int = MAX_DAYS, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        empty = " or null (never)" if nullable else ""
        raise InvalidInput(f"{field} is a whole number of days from {low} to {high}{empty}.", field=field)
    return value


def _day_list(value: Any, *, field: str) -> list[int]:
    if not isinstance(value, list) or len(value) > MAX_STEPS:
        raise InvalidInput(f"{field} is a list of at most {MAX_STEPS} numbers of days.", field=field)
    days = [_days(v, field=field, low=1) for v in value]
    if len(set(days)) != len(days):
        raise InvalidInput(f"{field} names a day twice.", field=field)
    return sorted(days)


def _currencies(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 50:
        raise InvalidInput("currencies is a list of ISO 4217 codes (empty: any).", field="currencies")
    codes = [check_currency(str(v).upper() if isinstance(v, str) else "", field="currencies") for v in value]
    if len(set(codes)) != len(codes):
        raise InvalidInput("currencies names a currency twice.", field="currencies")
    return codes


def _methods(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("payment_methods is a non-empty list.", field="payment_methods")
    unknown = [v for v in value if v not in PaymentMethod.values]
    if unknown:
        raise InvalidInput(
            f"Unknown payment methods {unknown}: choose from {sorted(PaymentMethod.values)}.", field="payment_methods"
        )
    if len(set(value)) != len(value):
        raise InvalidInput("payment_methods names a method twice.", field="payment_methods")
    return list(value)


def clean(data: dict[str, Any], current: BillingSettings) -> dict[str, Any]:
    """The fields of ``data`` checked (unknown ones refused), and the rules across fields against the
    values they meet (those sent, else the current ones)."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidInput(f"Unknown settings: {unknown}.", field=unknown[0])
    checked: dict[str, Any] = {}
    for name, value in data.items():
        if name.endswith("_number_format"):
            checked[name] = check_number_format(value, field=name)
        elif name == "payment_terms_days":
            checked[name] = _days(value, field=name)
        elif name == "lead_days":
            checked[name] = _days(value, field=name, high=MAX_LEAD_DAYS)
        elif name.startswith("reminder_days_"):
            checked[name] = _day_list(value, field=name)
        elif name.endswith("_after_days"):
            checked[name] = _days(value, field=name, nullable=True)
        elif name == "currencies":
            checked[name] = _currencies(value)
        elif name == "payment_methods":
            checked[name] = _methods(value)
        elif name == "prices_include_tax":
            if not isinstance(value, bool):
                raise InvalidInput("prices_include_tax is true (prices include tax) or false.", field=name)
            checked[name] = value
    merged = {name: checked.get(name, getattr(current, name)) for name in FIELDS}
    if merged["invoice_number_format"] == merged["credit_note_number_format"]:
        raise InvalidInput(
            "Invoices and credit notes need different number formats (e.g. INV-… and CN-…).",
            field="credit_note_number_format",
        )
    suspend, terminate = merged["suspend_after_days"], merged["terminate_after_days"]
    if suspend is not None and terminate is not None and terminate <= suspend:
        raise InvalidInput("Services are cancelled after they are suspended: terminate_after_days must be "
                           "more than suspend_after_days.", field="terminate_after_days")  # fmt: skip
    return checked


@transaction.atomic
def settings_update(*, tenant, data: dict[str, Any], actor=None) -> BillingSettings:
    """Change the fields in ``data`` (checked as a whole first: nothing is written when one is wrong)."""
    BillingSettings.objects.get_or_create(tenant_id=tenant.pk)
    row = BillingSettings.objects.select_for_update().get(tenant_id=tenant.pk)
    checked = clean(data, row)
    with audit.change(row, "billing_settings.update", actor=actor) as event:
        for name, value in checked.items():
            setattr(row, name, value)
        row.full_clean(exclude=["tenant"])
        row.save()
        if not audit.diff(event.before, audit.snapshot(row)):
            event.skip()
    return row


def default_currency(tenant) -> str:
    """The currency a new customer of ``tenant`` is billed in when nobody chose one (a visitor's own
    sign-up): the tenant's default currency when its billing settings accept it (or accept any),
    else the first currency they accept, so the customer's first order is never refused for it."""
    accepted = settings_of(tenant).currencies or []
    own = (tenant.default_currency or "").upper()
    if not accepted or own in accepted:
        return own
    return accepted[0]


def check_currency_accepted(tenant, currency: str) -> None:
    """A document made by hand is in one of the tenant's currencies (any when none is listed)."""
    accepted = settings_of(tenant).currencies
    if accepted and currency not in accepted:
        raise InvalidInput(f"This tenant bills in {', '.join(accepted)}, not {currency}.", field="currency")


def check_method_offered(tenant, method: str) -> None:
    """What customers are offered: a method the tenant does not accept is refused (409). Money that
    arrives anyway (a provider's webhook, a payment staff record by hand) is never refused."""
    if method not in settings_of(tenant).payment_methods:
        raise Conflict(f"This tenant does not accept payments by {method}.", code="payment_method_not_accepted")
