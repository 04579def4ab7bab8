"""Concurrency on PostgreSQL: many writers, no duplicate and no gap."""

import threading

import pytest
from django.db import connection

from apps.billing.models import Invoice
from apps.billing.services import invoices
from tests.billing_support import customer_of, draft


def run_parallel(fn, items):
    barrier = threading.Barrier(len(items))
    errors = []

    def worker(item):
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            fn(item)
        except Exception as exc:  # collected and asserted on below
            errors.append(exc)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=worker, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_issues_get_unique_gapless_numbers(tenant_a):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    customer = customer_of(tenant_a)
    drafts = [draft(tenant_a, customer=customer) for _ in range(20)]

    def issue(invoice):
        with tenant_a.scope():
            invoices.invoice_issue(invoice=invoice)

    assert run_parallel(issue, drafts) == []
    numbers = sorted(Invoice.all_tenants.filter(tenant=tenant_a.tenant).values_list("number", flat=True))
    seqs = sorted(int(n.rsplit("-", 1)[1]) for n in numbers)
    assert seqs == list(range(1, 21))


@pytest.mark.django_db(transaction=True)
def test_concurrent_payments_never_overpay_the_invoice(tenant_a):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    from decimal import Decimal

    from apps.billing.services import credit, payments

    customer = customer_of(tenant_a)
    invoice = draft(tenant_a, customer=customer, lines=[{"description": "X", "unit_price": "10.00"}])
    with tenant_a.scope():
        invoice = invoices.invoice_issue(invoice=invoice)

    def pay(i):
        with tenant_a.scope():
            payments.payment_record(invoice=invoice, amount=Decimal("3.00"), method="cash", reference=str(i))

    errors = run_parallel(pay, list(range(5)))
    # In whatever order they land: 3 + 3 + 3 + 1 (and 2 to credit), then the invoice is paid and a
    # fifth manual payment is refused (409), never applied twice or lost half-way.
    assert [type(e).__name__ for e in errors] == ["Conflict"]
    fresh = Invoice.all_tenants.get(pk=invoice.pk)
    assert fresh.amount_paid == Decimal("10.00") and fresh.amount_due == 0 and fresh.status == "paid"
    assert credit.credit_balance(customer=customer, currency="EUR") == Decimal("2.00")
