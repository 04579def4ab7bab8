"""The billing run's two write paths write the same rows: COPY on PostgreSQL (apps/billing/bulk.py) and the
ORM's bulk_create (the embedded SQLite's, and PostgreSQL's with ``bulk.USE_COPY`` off). The same run is made
both ways in one tenant (the first rolled back after it is read), and every row it wrote is compared with its
generated keys and timestamps left out."""

import uuid
from datetime import date
from decimal import Decimal

import pytest
from django.db import transaction

from apps.audit import services as audit
from apps.audit.models import AuditEvent
from apps.billing import bulk
from apps.billing.models import (
    CreditTransaction,
    Invoice,
    InvoiceLine,
    Subscription,
    SubscriptionCharge,
)
from apps.billing.services.billing_run import billing_run
from apps.catalog.services import product_create
from apps.customers.models import Customer

ANCHOR = date(2026, 1, 15)
ON = date(2026, 2, 10)
SKIP = {"id", "created_at", "updated_at"}


def _setup(fx) -> list[Subscription]:
    """Four customers: no credit; a little credit (applied in part); more credit than the invoice (issued
    paid); two subscriptions and a pending plan-change charge (linked to its line by an UPDATE)."""
    with fx.scope():
        product = product_create(tenant=fx.tenant, data={
            "name": "Plan copy", "slug": "plan-copy", "type": "hosting_plan",
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("9.99"), "setup_fee": Decimal(0)}],
        })  # fmt: skip
        subs = []
        for i, credit in enumerate([None, Decimal("5.00"), Decimal("100.00"), None]):
            customer = Customer.objects.create(name=f"Copy {i}", email=f"copy{i}@example.com", currency="EUR",
                                               city="Ghent", country="BE")  # fmt: skip
            if credit:
                CreditTransaction.objects.create(customer=customer, currency="EUR", amount=credit,
                                                 kind="adjustment", description="Goodwill")  # fmt: skip
            for n in range(2 if i == 3 else 1):
                subs.append(Subscription.objects.create(
                    customer=customer, product=product, status="active", currency="EUR", cycle="monthly",
                    unit_price=Decimal("9.99"), quantity=1 + n, tax_rate=Decimal(21), anchor_date=ANCHOR,
                    current_period_start=ANCHOR, current_period_end=date(2026, 2, 15),
                    billed_through=date(2026, 2, 15),
                ))  # fmt: skip
        SubscriptionCharge.objects.create(subscription=subs[-1], kind=SubscriptionCharge.Kind.PRORATION,
                                          period_start=date(2026, 2, 1), period_end=date(2026, 2, 15),
                                          amount=Decimal("3.10"), description="Upgrade")  # fmt: skip
    return subs


def _fields(obj, names: dict) -> dict:
    out = {}
    for field in obj._meta.concrete_fields:
        if field.name in SKIP:
            continue
        value = getattr(obj, field.attname)
        if isinstance(value, uuid.UUID):
            value = names.get(value, value)
        elif field.name == "seller_details":
            value = {k: v for k, v in value.items() if k != "taken_at"}  # when it was read
        elif field.name == "request_id":
            value = bool(value)  # outside a request, one made up per event
        out[field.name] = value
    return out


def _written(tenant) -> dict:
    """Every row of ``tenant`` a run writes, its keys replaced by stable names (numbers, positions)."""
    invoices = list(Invoice.all_tenants.filter(tenant=tenant).order_by("number"))
    names: dict = {inv.pk: f"invoice {inv.number}" for inv in invoices}
    lines = list(InvoiceLine.all_tenants.filter(tenant=tenant).select_related("invoice"))
    names.update({line.pk: f"line {line.invoice.number}/{line.position}" for line in lines})
    issued = [inv.pk for inv in invoices]
    return {
        "invoices": [
            {**_fields(inv, names), "issued_at": inv.issued_at is not None, "paid_at": inv.paid_at is not None}
            for inv in invoices
        ],
        "lines": sorted((_fields(line, names) for line in lines), key=repr),
        "charges": sorted((_fields(c, names) for c in SubscriptionCharge.all_tenants.filter(tenant=tenant)), key=repr),
        "credit": sorted((_fields(c, names) for c in CreditTransaction.all_tenants.filter(tenant=tenant)), key=repr),
        "audit": sorted(
            (
                {**_fields(e, names), "object_id": names[uuid.UUID(e.object_id)]}
                for e in AuditEvent.objects.filter(object_id__in=[str(pk) for pk in issued])
            ),
            key=repr,
        ),
        "subscriptions": sorted((_fields(s, names) for s in Subscription.all_tenants.filter(tenant=tenant)), key=repr),
    }


@pytest.mark.django_db
def test_copy_and_bulk_create_write_the_same_rows(tenant_a, monkeypatch):
    _setup(tenant_a)
    seen = {}
    for use_copy in (True, False):
        monkeypatch.setattr(bulk, "USE_COPY", use_copy)
        monkeypatch.setattr(audit, "COPY_EVENTS", use_copy)
        with transaction.atomic():
            result = billing_run(on=ON)
            seen[use_copy] = (result.invoices, result.charges, _written(tenant_a.tenant))
            transaction.set_rollback(True)
    copied, created = seen[True], seen[False]
    assert copied[:2] == created[:2] == (4, 5)
    rows = copied[2]
    # The run did what it should: credit applied in part and in full, the pending charge on its line.
    credit = {(inv["credit_applied"], inv["status"]) for inv in rows["invoices"]}
    assert (Decimal("5.00"), "open") in credit and (Decimal("12.09"), "paid") in credit, credit
    assert all(c["invoice_line"] for c in rows["charges"]), rows["charges"]
    assert len(rows["audit"]) == 4 * 3
    for key in rows:
        assert copied[2][key] == created[2][key], key


@pytest.mark.django_db
def test_a_batch_with_one_period_already_charged_bills_the_others(tenant_a):
    """COPY refuses the whole batch when one charge exists; the savepoint takes it back and the batch goes
    through ON CONFLICT DO NOTHING: the new charges are written and linked, the old one is not billed again."""
    subs = _setup(tenant_a)
    assert billing_run(on=ON).invoices == 4
    Subscription.all_tenants.filter(pk=subs[0].pk).update(billed_through=date(2026, 2, 15))
    # A new customer due in the same batch.
    with tenant_a.scope():
        customer = Customer.objects.create(name="Late", email="late@example.com", currency="EUR")
        late = Subscription.objects.create(
            customer=customer, product=subs[0].product, status="active", currency="EUR", cycle="monthly",
            unit_price=Decimal("9.99"), anchor_date=ANCHOR, current_period_start=ANCHOR,
            current_period_end=date(2026, 2, 15), billed_through=date(2026, 2, 15),
        )  # fmt: skip
    result = billing_run(on=ON)
    assert (result.invoices, result.charges) == (1, 1)
    assert SubscriptionCharge.all_tenants.filter(subscription=subs[0]).count() == 1
    charge = SubscriptionCharge.all_tenants.select_related("invoice_line__invoice").get(subscription=late)
    assert charge.invoice_line.invoice.customer_id == customer.pk
    assert charge.invoice_line.invoice.total == Decimal("9.99")


@pytest.mark.django_db
def test_the_batch_audit_builders_make_the_events_build_makes(tenant_a):
    """``audit.snapshot_of`` and ``audit.build_plain`` (the batch's) against ``snapshot`` and ``build``: an
    invoice created then issued, by a staff user in a request and by the system."""
    from apps.common import context

    _setup(tenant_a)
    billing_run(on=ON)
    invoice = Invoice.all_tenants.filter(tenant=tenant_a.tenant, credit_applied__gt=0).first()
    before = audit.snapshot(invoice)
    assert audit.snapshot_of(Invoice)(invoice) == before
    invoice.status, invoice.amount_due = "void", Decimal(0)
    after = audit.snapshot_of(Invoice)(invoice)
    assert after == audit.snapshot(invoice) and after != before
    for ctx in (context.RequestContext(actor=tenant_a.owner, via="api", ip="192.0.2.1"), None):
        token = context.activate(ctx)
        try:
            for kwargs in ({"after": before}, {"before": before, "after": after}):
                fast = audit.build_plain(action="invoice.issue", obj=invoice, tenant=tenant_a.tenant.pk, **kwargs)
                slow = audit.build(action="invoice.issue", obj=invoice, tenant=tenant_a.tenant.pk, **kwargs)
                skip = {"id", "created_at"} | ({"request_id"} if ctx is None else set())
                assert _fields(fast, {}) | {k: None for k in skip} == _fields(slow, {}) | {k: None for k in skip}
                assert fast.actor_id == (tenant_a.owner.pk if ctx else None) and fast.changes
        finally:
            context.reset(token)


@pytest.mark.django_db
def test_billing_details_read_through_the_batch_memo_are_the_same(tenant_a):
    from apps.billing.services.invoices import _billing_details

    with tenant_a.scope():
        be = Customer.objects.create(name="Be", email="be@example.com", currency="EUR", country="BE")
        none = Customer.objects.create(name="None", email="none@example.com", currency="EUR")
    memo: dict = {}
    for customer in (be, none, Customer.all_tenants.get(pk=be.pk), Customer.all_tenants.get(pk=none.pk)):
        assert _billing_details(customer, memo) == _billing_details(customer)
    assert _billing_details(be)["address"][-1] == "BE" and _billing_details(none)["address"][-1] == ""
    deferred = Customer.all_tenants.defer("country").get(pk=be.pk)
    assert _billing_details(deferred, memo) == _billing_details(be)


@pytest.mark.django_db
def test_update_each_writes_keys_dates_and_times_exactly(tenant_a):
    """``_update_each`` passes keys, dates and times as one array text each: the values read back equal."""
    from datetime import UTC, datetime

    from apps.billing.services.charges import _array_literal, _update_each

    subs = _setup(tenant_a)
    stamps = [datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC), datetime(2026, 3, 1, 10, 0, tzinfo=UTC)]
    for i, sub in enumerate(subs):
        sub.billed_through = date(2027, 1, 1 + i)
        sub.updated_at = stamps[i % 2]
    _update_each(Subscription, subs, ["billed_through", "updated_at"])
    for sub in subs:
        fresh = Subscription.all_tenants.get(pk=sub.pk)
        assert (fresh.billed_through, fresh.updated_at) == (sub.billed_through, sub.updated_at)
    assert _array_literal([uuid.UUID(int=1), None]) == "{00000000-0000-0000-0000-000000000001,NULL}"
    assert _array_literal(["a,b"]) == ["a,b"]  # anything else goes as a list
