"""The billing run in batches: queries per batch do not grow with its size, and batching keeps the guarantees
(gapless numbers, one charge per period, one audit trail per invoice)."""

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.billing.models import Invoice, InvoiceLine, Subscription, SubscriptionCharge
from apps.billing.services import billing_run as run_module
from apps.billing.services.billing_run import billing_run
from apps.catalog.services import product_create
from apps.customers.models import Customer

ANCHOR = date(2026, 1, 15)
ON = date(2026, 2, 10)  # 5 days before the next period: inside the default 7-day lead


def _subscriptions(fx, n: int, tag: str) -> list[Subscription]:
    with fx.scope():
        product = product_create(tenant=fx.tenant, data={
            "name": f"Plan {tag}", "slug": f"plan-{tag}", "type": "hosting_plan",
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("9.99"), "setup_fee": Decimal(0)}],
        })  # fmt: skip
        subs = []
        for i in range(n):
            customer = Customer.objects.create(name=f"C{tag}{i}", email=f"c{tag}{i}@example.com", currency="EUR")
            subs.append(Subscription.objects.create(
                customer=customer, product=product, status="active", currency="EUR", cycle="monthly",
                unit_price=Decimal("9.99"), tax_rate=Decimal(21), anchor_date=ANCHOR, current_period_start=ANCHOR,
                current_period_end=date(2026, 2, 15), billed_through=date(2026, 2, 15),
            ))  # fmt: skip
    return subs


def _queries_of_run(n: int, fx) -> int:
    _subscriptions(fx, n, tag=str(n))
    with CaptureQueriesContext(connection) as ctx:
        result = billing_run(on=ON)
    assert result.invoices == n
    return len(ctx.captured_queries)


@pytest.mark.django_db
def test_queries_of_a_run_do_not_grow_with_the_number_of_invoices(tenant_a, tenant_b):
    small = _queries_of_run(5, tenant_a)
    large = _queries_of_run(20, tenant_b)
    # One batch either way: the same statements, whatever its size (it was ~35 per invoice).
    assert large <= small + 2, (small, large)
    assert large / 20 < 2


@pytest.mark.django_db
def test_batches_of_a_tenant_number_gaplessly_and_audit_every_invoice(tenant_a, monkeypatch):
    monkeypatch.setattr(run_module, "BATCH", 4)  # 10 customers: batches of 4, 4 and 2
    subs = _subscriptions(tenant_a, 10, tag="g")
    result = billing_run(on=ON)
    assert (result.invoices, result.charges, result.subscriptions) == (10, 10, 10)
    issued = list(Invoice.all_tenants.filter(tenant=tenant_a.tenant).order_by("number"))
    assert [int(inv.number.rsplit("-", 1)[1]) for inv in issued] == list(range(1, 11))
    for inv in issued:
        assert inv.status == "open" and inv.total == Decimal("12.09") and inv.amount_due == inv.total
        line = InvoiceLine.all_tenants.get(invoice=inv)
        assert (line.period_start, line.period_end) == (date(2026, 2, 15), date(2026, 3, 14))
        assert line.subscription_charge.subscription.customer_id == inv.customer_id
        actions = set(AuditEvent.objects.filter(object_id=str(inv.pk)).values_list("action", flat=True))
        assert actions == {"invoice.create", "invoice.issue", "billing.run.invoice"}
    for sub in subs:
        sub.refresh_from_db()
        assert sub.billed_through == date(2026, 3, 15)
    assert billing_run(on=ON).invoices == 0


@pytest.mark.django_db
def test_a_period_already_charged_is_not_billed_again(tenant_a):
    """The unique charge key is the last guard: even when billed_through is behind (as it would be for a
    run that read it before another committed), the charge is skipped, not invoiced twice."""
    subs = _subscriptions(tenant_a, 3, tag="d")
    assert billing_run(on=ON).invoices == 3
    Subscription.all_tenants.filter(pk=subs[0].pk).update(billed_through=date(2026, 2, 15))
    result = billing_run(on=ON)
    assert (result.invoices, result.charges) == (0, 0)
    assert SubscriptionCharge.all_tenants.filter(subscription=subs[0]).count() == 1
    assert Invoice.all_tenants.filter(customer=subs[0].customer).count() == 1
