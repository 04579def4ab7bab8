"""What happens elsewhere when an invoice is paid or voided (subscriptions, orders, dunning).

Modules register callables; they run inside the transaction that changed the invoice, so their
jobs are committed (or rolled back) together with the payment.
"""

from __future__ import annotations

from collections.abc import Callable

PAID: list[Callable] = []
VOIDED: list[Callable] = []


def on_invoice_paid(fn: Callable) -> Callable:
    PAID.append(fn)
    return fn


def on_invoice_voided(fn: Callable) -> Callable:
    VOIDED.append(fn)
    return fn


def invoice_paid(invoice) -> None:
    for fn in PAID:
        fn(invoice)


def invoice_voided(invoice) -> None:
    for fn in VOIDED:
        fn(invoice)
