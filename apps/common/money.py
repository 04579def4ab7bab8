"""Currencies (ISO 4217) with their minor-unit exponents, and rounding to them."""

from decimal import ROUND_HALF_UP, Decimal

# Active ISO 4217 codes and their exponents; the ones that are not 2 are listed apart.
_TWO = [
    "AED",
    "AFN",
    "ALL",
    "AMD",
    "ANG",
    "AOA",
    "ARS",
    "AUD",
    "AWG",
    "AZN",
    "BAM",
    "BBD",
    "BDT",
    "BGN",
    "BMD",
    "BND",
    "BOB",
    "BRL",
    "BSD",
    "BTN",
    "BWP",
    "BYN",
    "BZD",
    "CAD",
    "CDF",
    "CHF",
    "CNY",
    "COP",
    "CRC",
    "CUP",
    "CVE",
    "CZK",
    "DKK",
    "DOP",
    "DZD",
    "EGP",
    "ERN",
    "ETB",
    "EUR",
    "FJD",
    "FKP",
    "GBP",
    "GEL",
    "GHS",
    "GIP",
    "GMD",
    "GTQ",
    "GYD",
    "HKD",
    "HNL",
    "HTG",
    "HUF",
    "IDR",
    "ILS",
    "INR",
    "IRR",
    "ISK",
    "JMD",
    "KES",
    "KGS",
    "KHR",
    "KPW",
    "KYD",
    "KZT",
    "LAK",
    "LBP",
    "LKR",
    "LRD",
    "LSL",
    "MAD",
    "MDL",
    "MGA",
    "MKD",
    "MMK",
    "MNT",
    "MOP",
    "MRU",
    "MUR",
    "MVR",
    "MWK",
    "MXN",
    "MYR",
    "MZN",
    "NAD",
    "NGN",
    "NIO",
    "NOK",
    "NPR",
    "NZD",
    "PAB",
    "PEN",
    "PGK",
    "PHP",
    "PKR",
    "PLN",
    "QAR",
    "RON",
    "RSD",
    "RUB",
    "SAR",
    "SBD",
    "SCR",
    "SDG",
    "SEK",
    "SGD",
    "SHP",
    "SLE",
    "SOS",
    "SRD",
    "SSP",
    "STN",
    "SVC",
    "SYP",
    "SZL",
    "THB",
    "TJS",
    "TMT",
    "TOP",
    "TRY",
    "TTD",
    "TWD",
    "TZS",
    "UAH",
    "USD",
    "UYU",
    "UZS",
    "VES",
    "WST",
    "XCD",
    "YER",
    "ZAR",
    "ZMW",
    "ZWL",
]
_ZERO = ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]
_THREE = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"]

CURRENCIES: dict[str, int] = {**dict.fromkeys(_TWO, 2), **dict.fromkeys(_ZERO, 0), **dict.fromkeys(_THREE, 3)}


CURRENCY_CHOICES = sorted(CURRENCIES)


def exponent(currency: str) -> int:
    return CURRENCIES[currency.upper()]


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the currency's minor unit."""
    return Decimal(amount).quantize(Decimal(1).scaleb(-exponent(currency)), rounding=ROUND_HALF_UP)


# Every money column is numeric(18, 4) (apps.billing.models.money_field, apps.catalog.models.MONEY):
# fewer than 10^14 whole units. Amounts are held to that so a row that PostgreSQL would refuse, or
# that SQLite (the embedded default, which does not enforce numeric precision) would store and
# then fail to read back, is never written; database CHECK constraints say the same.
MONEY_MAX_DIGITS = 18
MONEY_DECIMAL_PLACES = 4
MAX_AMOUNT = Decimal(10) ** (MONEY_MAX_DIGITS - MONEY_DECIMAL_PLACES) - Decimal(1).scaleb(-MONEY_DECIMAL_PLACES)
_MAX_TEXT = 64  # no real amount is written with more characters


def check_currency(currency, *, field: str = "currency") -> str:
    """An upper-case ISO 4217 code we know the exponent of; InvalidInput otherwise."""
    from .exceptions import InvalidInput

    if not isinstance(currency, str) or currency.upper() not in CURRENCIES:
        raise InvalidInput("Unknown ISO 4217 currency code.", field=field)
    return currency.upper()


def parse_amount(
    value,
    currency: str,
    *,
    field: str = "amount",
    label: str | None = None,
    positive: bool = False,
    decimals: int | None = None,
) -> Decimal:
    """The one check of an amount of money, whatever its source (API, admin, webhook, import).

    ``value`` is a decimal string, an integer or a Decimal (a float is not exact and is refused).
    It must be finite, not negative (more than zero when ``positive``), have no more decimals than
    ``currency`` has (or ``decimals``, for rates finer than the minor unit such as metered unit
    prices) and fit the money columns (at most MAX_AMOUNT). Answers the Decimal, or raises
    InvalidInput on ``field`` with a message that starts with ``label`` (default: the field).
    """
    from .exceptions import InvalidInput

    currency = check_currency(currency)
    places = exponent(currency) if decimals is None else decimals
    name = label or field.replace("_", " ").capitalize()

    def refuse(reason: str):
        return InvalidInput(f"{name} {reason}", field=field)

    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise refuse("must be a decimal string.")
    if isinstance(value, int):
        if abs(value) > MAX_AMOUNT:  # before str(): a 5000-digit integer cannot even be printed
            raise refuse(f"is larger than the maximum ({MAX_AMOUNT.normalize():f}).")
        value = Decimal(value)
    elif isinstance(value, str):
        if len(value) > _MAX_TEXT:
            raise refuse("is not a decimal number.")
        try:
            value = Decimal(value.strip())
        except ArithmeticError:
            raise refuse("is not a decimal number.") from None
    if not value.is_finite():
        raise refuse("must be a finite number.")
    if abs(value) > MAX_AMOUNT:
        raise refuse(f"is larger than the maximum ({MAX_AMOUNT.normalize():f}).")
    if value < 0 or (positive and value == 0):
        raise refuse("must be more than zero." if positive else "cannot be negative.")
    if value != value.quantize(Decimal(1).scaleb(-places)):
        raise refuse(f"has more decimals than {currency} allows ({places}).")
    return value.quantize(Decimal(1).scaleb(-places))


def render_amount(amount, currency) -> str | None:
    """An amount as a string with exactly its currency's minor-unit decimals ("19.99", "1500").

    Rendering never fails: a stored row that breaks the money rule (an unknown currency, NaN, a
    value from before the CHECK constraints) is shown as stored rather than taking its whole list
    down with it; the rule itself is enforced when amounts are written (parse_amount)."""
    if amount is None:
        return None
    try:
        return str(quantize(Decimal(amount), currency))
    except (KeyError, AttributeError, TypeError, ArithmeticError, ValueError):
        return str(amount)
