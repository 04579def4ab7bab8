"""Issue 21: the drain records a run of payments to one invoice together (``payments.payment_record_many``:
the invoice, customer and references locked once, the rows and audit events inserted together, one invoice
UPDATE). It must leave exactly what applying each event alone (``webhooks.process``) leaves: the same event
outcomes, payments, credit, invoice figures and audit events in the same order."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing.models import CreditTransaction, Invoice, Payment, WebhookEvent
from apps.billing.services import payments, webhooks
from tests.billing_support import GENERIC_SECRET, generic_payment, issued, post_generic

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _deferred(settings):
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = GENERIC_SECRET
    settings.MPANEL_JOBS_EAGER = False


def _post(event: dict) -> None:
    response = post_generic(event)
    assert response.status_code == 200, response.content


def _deliveries(invoice: Invoice, tag: str) -> list[dict]:
    """Payments that go together, then a repeat, a wrong currency, a bad amount, a refund of an earlier
    payment, more payments, one that settles and overpays, one after it is paid, and an unknown type."""

    def pay(n: int, amount: str, ref: str, currency: str = "EUR") -> dict:
        event = generic_payment(invoice, f"{tag}-evt-{n}", amount=amount, reference=f"{tag}-{ref}")
        event["data"]["currency"] = currency
        return event

    refund = {"invoice_id": str(invoice.pk), "amount": "1.00", "currency": "EUR", "reference": f"{tag}-r2"}
    failed = {"invoice_id": str(invoice.pk), "amount": "1.00", "currency": "EUR", "reference": f"{tag}-r4"}
    return [
        pay(1, "1.00", "r1"),
        pay(2, "2.00", "r2"),
        pay(3, "0.50", "r3"),
        {"id": f"{tag}-evt-4", "type": "payment.failed", "data": failed},  # between two runs
        pay(5, "2.00", "r5"),
        pay(6, "1.00", "r6"),
        pay(7, "1.00", "r1"),  # the same payment again (another event id): nothing twice
        pay(8, "1.00", "r8", currency="USD"),  # failed: not the invoice's currency
        pay(9, "abc", "r9"),  # failed: not an amount
        {"id": f"{tag}-evt-10", "type": "refund.succeeded", "data": refund},  # after its payment
        pay(11, "2.00", "r11"),
        pay(12, str(invoice.total), "r12"),  # settles the invoice and leaves credit
        pay(13, "1.00", "r13"),  # on a paid invoice: credit
        {"id": f"{tag}-evt-14", "type": "customer.created", "data": {}},
    ]


def _outcome(invoice: Invoice, tag: str, since) -> dict:
    invoice = Invoice.all_tenants.get(pk=invoice.pk)
    events = WebhookEvent.objects.filter(event_id__startswith=f"{tag}-").order_by("created_at")
    audit = AuditEvent.objects.filter(created_at__gte=since).order_by("created_at", "id")

    def plain(changes: dict) -> dict:
        # Numbers of credit notes and the runs' tags differ between the two invoices; every figure must not.
        kept = {k: v for k, v in changes.items() if k != "number"}
        if "reference" in kept:
            kept["reference"] = [v.removeprefix(f"{tag}-") if v else v for v in kept["reference"]]
        return kept

    return {
        "events": [(e.event_id.removeprefix(tag), e.status, e.error, e.attempts) for e in events],
        "invoice": {f: getattr(invoice, f) for f in ("status", "amount_paid", "amount_due", "amount_credited")},
        "payments": list(
            Payment.all_tenants.filter(invoice=invoice)
            .order_by("created_at")
            .values_list("amount", "applied_to_invoice", "credited_to_balance", "refunded_amount", "status", "currency")
        ),
        "credit": list(CreditTransaction.all_tenants.filter(invoice=invoice).values_list("amount", "kind")),
        "audit": [(a.action, a.object_type, plain(a.changes)) for a in audit],
        "paid_at": invoice.paid_at is not None,
    }


def test_a_drain_leaves_exactly_what_applying_each_event_alone_leaves(tenant_a, monkeypatch):
    alone, together = issued(tenant_a), issued(tenant_a)
    assert alone.total == together.total and alone.total > Decimal("10")

    for delivery in _deliveries(alone, "a"):
        _post(delivery)
    since = timezone.now()
    for pk in (
        WebhookEvent.objects.filter(event_id__startswith="a-").order_by("created_at").values_list("pk", flat=True)
    ):
        webhooks.process(pk)
    one_by_one = _outcome(alone, "a", since)

    for delivery in _deliveries(together, "b"):
        _post(delivery)
    since = timezone.now()
    runs = []
    record_many = payments.payment_record_many

    def watched(**kwargs):
        runs.append(len(recorded := record_many(**kwargs)))
        return recorded

    monkeypatch.setattr(payments, "payment_record_many", watched)
    assert webhooks.drain() == 14
    assert runs == [3, 2, 0]  # two runs together; the repeat ends the second and the rest go one by one
    drained = _outcome(together, "b", since)

    assert drained == one_by_one
    statuses = [status for _id, status, _error, _attempts in drained["events"]]
    assert statuses == ["processed"] * 7 + ["failed"] * 2 + ["processed"] * 4 + ["ignored"]
    assert drained["invoice"]["status"] == "paid"
    assert [a for a, _t, _c in drained["audit"]][:7] == ["payment.create", "invoice.payment"] * 3 + ["payment.failed"]


def test_a_run_of_payments_to_one_invoice_is_a_few_statements(tenant_a):
    """50 payments to one invoice: locked, recorded and marked together, not ~16 statements each."""
    invoice = issued(tenant_a, lines=[{"description": "Top-up", "quantity": "1", "unit_price": "100.00"}])
    for i in range(50):
        data = {"invoice_id": str(invoice.pk), "amount": "1.00", "currency": "EUR", "reference": f"r{i}"}
        _post({"id": f"evt-{i}", "type": "payment.succeeded", "data": data})
    with CaptureQueriesContext(connection) as queries:
        assert webhooks.drain() == 50
    assert len(queries) <= 25, [q["sql"][:80] for q in queries]
    # The order of apps/billing/locks.py (tests/billing/test_billing_locks.py): each kind first locked in it.
    locked = []
    for query in queries.captured_queries:
        table = re.search(r'FROM "(\w+)"', query["sql"]) if "FOR UPDATE" in query["sql"] else None
        if table and table.group(1) not in locked:
            locked.append(table.group(1))
    assert locked == [
        "billing_webhookevent", "billing_subscription", "billing_invoice", "billing_payment", "customers_customer"
    ]  # fmt: skip
    invoice = Invoice.all_tenants.get(pk=invoice.pk)
    assert invoice.amount_paid == 50 and invoice.amount_due == invoice.total - 50
    assert Payment.all_tenants.filter(invoice=invoice).count() == 50
    assert AuditEvent.objects.filter(action="invoice.payment", object_id=str(invoice.pk)).count() == 50
    assert AuditEvent.objects.filter(action="payment.create").count() == 50
    assert set(WebhookEvent.objects.values_list("status", "attempts")) == {("processed", 1)}


def test_the_drain_keeps_the_flag_while_at_work_and_looks_once_more_after_clearing_it(tenant_a, monkeypatch):
    """Deliveries while a drain works find the flag set and ask for nothing: the drain clears it only once a
    round finds nothing, then looks again, so a row committed just before the flag went is applied by it."""
    from django.core.cache import cache

    invoice = issued(tenant_a)
    cache.set(webhooks.DRAIN_FLAG, 1)
    data = {"invoice_id": str(invoice.pk), "amount": "1.00", "currency": "EUR"}
    _post({"id": "evt-early", "type": "payment.succeeded", "data": {**data, "reference": "early"}})
    flags = []

    class Watching:
        """The cache, with a delivery committed the moment before the drain clears the flag."""

        def delete(self, key):
            flags.append(cache.get(key))
            if key == webhooks.DRAIN_FLAG and len(flags) == 1:
                _post({"id": "evt-late", "type": "payment.succeeded", "data": {**data, "reference": "late"}})
            return cache.delete(key)

    monkeypatch.setattr(webhooks, "cache", Watching())
    assert webhooks.drain() == 2
    assert flags == [1]  # set while it worked, cleared once
    assert cache.get(webhooks.DRAIN_FLAG) is None
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert Invoice.all_tenants.get(pk=invoice.pk).amount_paid == 2


def test_a_drain_that_fails_clears_the_flag(tenant_a, monkeypatch):
    from django.core.cache import cache

    invoice = issued(tenant_a)
    data = {"invoice_id": str(invoice.pk), "amount": "1.00", "currency": "EUR", "reference": "r"}
    _post({"id": "evt-1", "type": "payment.succeeded", "data": data})
    cache.set(webhooks.DRAIN_FLAG, 1)

    def broken(pks):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(webhooks, "apply_batch", broken)
    with pytest.raises(RuntimeError):
        webhooks.drain()
    assert cache.get(webhooks.DRAIN_FLAG) is None  # the next delivery asks again
