"""The lock order of apps/billing/locks.py, pinned on the main money paths.

Each path's ``SELECT … FOR UPDATE`` statements are captured; the tables they lock first must come
in the written order (a later lock of a kind already taken re-locks rows the transaction holds,
e.g. ``activate_paid`` re-locking the subscriptions that ``lock_invoice`` took first).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.billing.models import CreditTransaction, Invoice, PaymentMethod, Subscription
from apps.billing.services import credit_notes, invoices, payments, subscriptions
from apps.billing.services.billing_run import billing_run
from apps.catalog.services import product_create
from tests.billing_support import customer_of, draft, issued

pytestmark = pytest.mark.django_db

# The order of apps/billing/locks.py, as tables.
ORDER = [
    "billing_webhookevent",
    "billing_subscription",
    "billing_invoice",
    "billing_payment",
    "billing_numbersequence",
    "customers_customer",
    "orders_order",  # the invoice hooks run last (orders completes or cancels the invoice's order)
]


def locked_tables(ctx: CaptureQueriesContext) -> list[str]:
    """The table of each SELECT … FOR UPDATE, in the order they ran, each kind once (its first lock)."""
    seen: list[str] = []
    for query in ctx.captured_queries:
        sql = query["sql"]
        if "FOR UPDATE" not in sql:
            continue
        table = re.search(r'FROM "(\w+)"', sql).group(1)
        if table not in seen:
            seen.append(table)
    return seen


def assert_in_order(tables: list[str]) -> None:
    ranks = [ORDER.index(t) for t in tables if t in ORDER]
    assert ranks == sorted(ranks), f"locks out of order: {tables}"


def product(fx):
    with fx.scope():
        return product_create(tenant=fx.tenant, data={
            "name": "VPS", "slug": "vps", "type": "hosting_plan", "visibility": "public",
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("10.00"), "setup_fee": Decimal(0)}],
        })  # fmt: skip


def pending_subscription(fx, start=None):
    with fx.scope():
        sub = subscriptions.subscription_create(
            tenant=fx.tenant, customer=customer_of(fx), product=product(fx), cycle="monthly", start=start
        )
    invoice = Invoice.all_tenants.filter(lines__subscription_charge__subscription=sub).get()
    return sub, invoice


def test_paying_an_invoice_locks_its_subscriptions_then_it_then_the_payment_then_the_customer(tenant_a):
    sub, invoice = pending_subscription(tenant_a)
    with tenant_a.scope(), CaptureQueriesContext(connection) as ctx:
        payments.payment_record(invoice=invoice, amount=invoice.amount_due + 1, method=PaymentMethod.GENERIC,
                                provider_ref="ref-1")  # fmt: skip
    tables = locked_tables(ctx)
    assert tables == [
        "billing_subscription", "billing_invoice", "billing_payment", "customers_customer", "orders_order"
    ]  # fmt: skip
    assert_in_order(tables)
    assert Subscription.all_tenants.get(pk=sub.pk).status == "active"


def test_issuing_with_the_customers_credit_locks_invoice_then_sequence_then_customer(tenant_a):
    customer = customer_of(tenant_a)
    CreditTransaction.all_tenants.create(tenant=tenant_a.tenant, customer=customer, currency="EUR",
                                         amount=Decimal("5.00"), kind=CreditTransaction.Kind.ADJUSTMENT)  # fmt: skip
    invoice = draft(tenant_a, customer=customer)
    with tenant_a.scope(), CaptureQueriesContext(connection) as ctx:
        issued_invoice = invoices.invoice_issue(invoice=invoice)
    assert issued_invoice.credit_applied == Decimal("5.00")
    tables = locked_tables(ctx)
    assert tables == ["billing_subscription", "billing_invoice", "billing_numbersequence", "customers_customer"]
    assert_in_order(tables)


def test_a_credit_note_locks_the_invoice_then_the_sequence(tenant_a):
    invoice = issued(tenant_a)
    with tenant_a.scope(), CaptureQueriesContext(connection) as ctx:
        credit_notes.credit_note_create(invoice=invoice, reason="Goodwill")
    tables = locked_tables(ctx)
    assert tables == ["billing_subscription", "billing_invoice", "billing_numbersequence", "orders_order"]
    assert_in_order(tables)


def test_a_refund_locks_the_invoice_before_the_payment(tenant_a):
    invoice = issued(tenant_a)
    with tenant_a.scope():
        payment = payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="bank_transfer")
    with tenant_a.scope(), CaptureQueriesContext(connection) as ctx:
        payments.payment_refund(payment=payment, amount=Decimal("1.00"), reason="Partial")
    tables = locked_tables(ctx)
    assert tables == ["billing_subscription", "billing_invoice", "billing_payment", "billing_numbersequence"]
    assert_in_order(tables)


def test_renewing_a_subscription_locks_it_then_the_sequence_then_the_customer(tenant_a):
    start = date(2026, 1, 10)
    _sub, invoice = pending_subscription(tenant_a, start=start)
    with tenant_a.scope():
        payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="bank_transfer")
    with CaptureQueriesContext(connection) as ctx:
        result = billing_run(on=date(2026, 2, 10) - timedelta(days=3))
    assert result.invoices == 1
    tables = locked_tables(ctx)
    assert tables == ["billing_subscription", "billing_numbersequence", "customers_customer"]
    assert_in_order(tables)
