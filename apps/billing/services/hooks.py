"""What happens elsewhere when an invoice is paid or voided (subscriptions, orders, dunning).

Modules register their hooks with ``@PAID.register()`` / ``@VOIDED.register()`` when they load;
the hooks run in registration order inside the transaction that changed the invoice, so their
jobs are committed (or rolled back) together with the payment. They run last: the rows they lock
come after the billing rows (apps/billing/locks.py).
"""

from __future__ import annotations

from collections.abc import Callable

from apps.common.registry import Registry

PAID: Registry[Callable] = Registry("invoice-paid hook")
VOIDED: Registry[Callable] = Registry("invoice-voided hook")
# Invoices just issued (open, something due), as one list per transaction: a batch of the billing
# run is one call (the saved-card charges, ``services.cards``, look them up in one query).
ISSUED: Registry[Callable] = Registry("invoices-issued hook")


def invoice_paid(invoice) -> None:
    for fn in PAID:
        fn(invoice)


def invoice_voided(invoice) -> None:
    for fn in VOIDED:
        fn(invoice)


def invoices_issued(invoices: list) -> None:
    for fn in ISSUED:
        fn(invoices)
