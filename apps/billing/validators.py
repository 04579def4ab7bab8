"""Checks of billing input that need no database (the model's ``clean`` and the services use them)."""

from __future__ import annotations

import string

from apps.common.exceptions import InvalidInput

NUMBER_FORMAT_FIELDS = {"year", "month", "seq"}


def validate_number_format(fmt: str) -> str:
    """A document number format such as ``INV-{year}-{seq:06}``: ``{seq}`` required, nothing unknown."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None}
        fmt.format(year=2026, month=1, seq=1)
    except (ValueError, IndexError, KeyError) as exc:
        raise InvalidInput(f"Not a valid number format: {exc}") from exc
    if "seq" not in fields:
        raise InvalidInput("The number format must contain {seq}, e.g. INV-{year}-{seq:06}.")
    if fields - NUMBER_FORMAT_FIELDS:
        raise InvalidInput(f"Unknown fields in the number format: {sorted(fields - NUMBER_FORMAT_FIELDS)}.")
    return fmt
