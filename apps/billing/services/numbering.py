"""Gapless document numbers per tenant and series.

The sequence row is locked (SELECT … FOR UPDATE) in the transaction that issues the document,
so concurrent issues queue on it and a rolled-back issue gives its number back: no gaps, no
duplicates (the documents' unique constraints back this up).
"""

from __future__ import annotations

from datetime import date

from django.db import IntegrityError, transaction

from ..locks import lock_number_sequence
from ..models import NumberSequence


def next_number(*, tenant, series: str, fmt: str, on: date) -> str:
    """Must run inside the transaction that stores the numbered document."""
    return next_numbers(tenant=tenant, series=series, fmt=fmt, on=on, count=1)[0]


def next_numbers(*, tenant, series: str, fmt: str, on: date, count: int) -> list[str]:
    """``count`` consecutive numbers under one lock of the sequence row (a batch of documents).

    Must run inside the transaction that stores the numbered documents: the row stays locked
    until it commits, and a rollback gives every number of the block back."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("next_number() must run inside the issuing transaction.")
    if count < 1:
        return []
    tenant_id = getattr(tenant, "pk", tenant)
    period = str(on.year) if "{year}" in fmt else ""
    seq = lock_number_sequence(tenant_id=tenant_id, series=series, period=period)
    if seq is None:
        try:
            with transaction.atomic():
                NumberSequence.objects.create(tenant_id=tenant_id, series=series, period=period)
        except IntegrityError:
            pass  # another transaction made it first
        seq = lock_number_sequence(tenant_id=tenant_id, series=series, period=period)
    first = seq.last + 1
    seq.last += count
    seq.save(update_fields=["last"])
    return [fmt.format(year=on.year, month=on.month, seq=n) for n in range(first, seq.last + 1)]
