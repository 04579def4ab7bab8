import threading
from datetime import date
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.api import SubscriptionViewSet
from apps.billing.models import (
    DunningNotice,
    Invoice,
    InvoiceStatus,
    Subscription,
    SubscriptionCharge,
    UsageRecord,
)
from apps.billing.services import credit, payments, subscriptions
from apps.billing.services.billing_run import billing_run
from apps.billing.services.dunning import dunning_run
from apps.catalog.services import product_create
from apps.jobs.models import Job
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.billing_support import customer_of
from tests.conftest import client_for

D = Decimal


def make_product(fx, name="VPS Small", amount="10.00", setup="5.00", metering=None, slug=None):
    with fx.scope():
        return product_create(tenant=fx.tenant, data={
            "name": name, "slug": slug or name.lower().replace(" ", "-"), "type": "hosting_plan",
            "visibility": "public",
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": D(amount), "setup_fee": D(setup)},
                       {"currency": "EUR", "cycle": "annual", "amount": D(amount) * 10, "setup_fee": D(0)}],
            "metering": metering,
        })  # fmt: skip


def first_invoice(sub) -> Invoice:
    return (
        Invoice.all_tenants.filter(lines__subscription_charge__subscription=sub)
        .distinct()
        .order_by("created_at")
        .first()
    )


def invoice_of_period(sub, start: date) -> Invoice:
    return Invoice.all_tenants.get(
        lines__subscription_charge__subscription=sub, lines__subscription_charge__period_start=start
    )


def subscribe(fx, product, customer=None, start=None, pay=True, quantity=1):
    customer = customer or customer_of(fx)
    with fx.scope():
        sub = subscriptions.subscription_create(tenant=fx.tenant, customer=customer, product=product,
                                                cycle="monthly", start=start, quantity=quantity)  # fmt: skip
        if pay:
            invoice = first_invoice(sub)
            payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="bank_transfer")
        sub.refresh_from_db()
    return sub


class TestSubscriptionApi(ApiTestCase):
    viewset = SubscriptionViewSet
    basename = "subscription"
    roles = {"list": Role.BILLING, "retrieve": Role.BILLING, "create": Role.ADMIN, "update": Role.ADMIN}

    @pytest.fixture(autouse=True)
    def _catalog(self, tenant_a):
        self.product = make_product(tenant_a)

    def make(self, fx, seq):
        return subscribe(fx, self.product, customer=customer_of(fx, email=f"s{seq}@example.com"))

    def create_payload(self, fx, seq):
        customer = customer_of(fx, email=f"new{seq}@example.com")
        return {"customer": str(customer.pk), "product": str(self.product.pk), "cycle": "monthly"}

    def update_payload(self, fx, obj, seq):
        return {"quantity": 2}


@pytest.mark.django_db
class TestLifecycle:
    def test_create_invoices_first_period_and_setup_then_payment_activates(
        self, tenant_a, django_capture_on_commit_callbacks
    ):
        product = make_product(tenant_a)
        customer = customer_of(tenant_a)
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        created = admin.post(reverse("subscription-list"), {"customer": str(customer.pk), "product": str(product.pk),
                                                            "cycle": "monthly"}, format="json")  # fmt: skip
        assert created.status_code == 201, created.content
        assert created.json()["status"] == "pending" and created.json()["unit_price"] == "10.00"
        sub = Subscription.all_tenants.get(pk=created.json()["id"])
        invoice = first_invoice(sub)
        assert invoice.status == "open" and invoice.total == D("15.00")
        kinds = set(SubscriptionCharge.all_tenants.filter(subscription=sub).values_list("kind", flat=True))
        assert kinds == {"recurring", "setup"}
        with django_capture_on_commit_callbacks(execute=True):
            admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}), {"amount": "15.00", "method": "cash"},
                       format="json")  # fmt: skip
        sub.refresh_from_db()
        assert sub.status == "active" and sub.activated_at
        job = Job.all_tenants.get(type="subscription.activate", object_id=str(sub.pk))
        # The hosting plan's provisioner ran (apps/hosting): with no web node yet it waits and retries.
        assert job.status == "PENDING" and "No active node with the 'web' role" in job.last_error

    def test_validation(self, tenant_a, tenant_b):
        product = make_product(tenant_a)
        foreign_product = make_product(tenant_b)
        customer = customer_of(tenant_a)
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        url = reverse("subscription-list")
        for body in (
            {"customer": str(customer.pk), "product": str(foreign_product.pk), "cycle": "monthly"},
            {"customer": str(customer.pk), "product": str(product.pk), "cycle": "onetime"},
            {"customer": str(customer.pk), "product": str(product.pk), "cycle": "quarterly"},  # no such price
            {"customer": str(customer.pk), "product": str(product.pk), "cycle": "monthly", "currency": "JPY"},
            {"customer": str(customer.pk), "product": str(product.pk), "cycle": "monthly", "quantity": 0},
        ):
            assert admin.post(url, body, format="json").status_code == 400, body
        assert not Subscription.all_tenants.exists() and not Invoice.all_tenants.exists()

    def test_state_machine(self, tenant_a):
        sub = subscribe(tenant_a, make_product(tenant_a))
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)

        def act(action, body=None):
            return admin.post(reverse(f"subscription-{action}", kwargs={"pk": sub.pk}), body or {}, format="json")

        assert act("resume").status_code == 409
        assert act("suspend").json()["status"] == "suspended"
        assert act("suspend").status_code == 409
        assert act("resume").json()["status"] == "active"
        assert act("cancel", {"at_period_end": True}).json()["cancel_at_period_end"] is True
        assert act("cancel").json()["status"] == "cancelled"
        for action in ("cancel", "suspend", "resume"):
            assert act(action).status_code == 409, action
        types = list(Job.all_tenants.filter(object_id=str(sub.pk)).values_list("type", flat=True))
        assert {"subscription.suspend", "subscription.resume", "subscription.cancel"} <= set(types)

    def test_cancelling_an_unpaid_subscription_voids_its_invoice(self, tenant_a):
        sub = subscribe(tenant_a, make_product(tenant_a), pay=False)
        with tenant_a.scope():
            subscriptions.subscription_cancel(sub=sub)
        assert first_invoice(sub).status == "void"

    def test_cancelling_now_voids_an_unpaid_renewal_for_days_it_will_not_serve(self, tenant_a):
        """The renewal invoiced ahead (7-day lead) bills only days from the cancel on: voided, so
        dunning never chases it; the customer's other service on a shared invoice keeps it owed."""
        customer = customer_of(tenant_a)
        alone = subscribe(tenant_a, make_product(tenant_a), start=date(2026, 3, 1))
        assert billing_run(on=date(2026, 3, 28)).invoices == 1
        renewal = invoice_of_period(alone, date(2026, 4, 1))
        assert renewal.status == "open"
        with tenant_a.scope():
            subscriptions.subscription_cancel(sub=alone, on=date(2026, 3, 29))
        renewal.refresh_from_db()
        assert renewal.status == "void" and renewal.amount_due == 0
        assert first_invoice(alone).status == "paid"  # the served period is not touched
        assert AuditEvent.objects.filter(action="invoice.void", object_id=str(renewal.pk)).count() == 1

        one = subscribe(tenant_a, make_product(tenant_a, name="Web"), customer=customer, start=date(2026, 3, 1))
        subscribe(tenant_a, make_product(tenant_a, name="Mail", amount="3.00"), customer=customer,
                  start=date(2026, 3, 1))  # fmt: skip
        assert billing_run(on=date(2026, 3, 28)).invoices == 1
        shared = invoice_of_period(one, date(2026, 4, 1))
        with tenant_a.scope():
            subscriptions.subscription_cancel(sub=one, on=date(2026, 3, 29))
        shared.refresh_from_db()
        assert shared.status == "open" and shared.total == D("13.00")


@pytest.mark.django_db
class TestBillingRun:
    def test_renewals_around_month_ends_each_period_once(self, tenant_a):
        sub = subscribe(tenant_a, make_product(tenant_a), start=date(2026, 1, 31))
        assert sub.billed_through == date(2026, 2, 28)
        assert billing_run(on=date(2026, 2, 20)).invoices == 0  # 8 days ahead: outside the 7-day lead
        assert billing_run(on=date(2026, 2, 21)).invoices == 1
        assert billing_run(on=date(2026, 2, 21)).invoices == 0
        sub.refresh_from_db()
        assert sub.billed_through == date(2026, 3, 31)
        # Two months of missed runs: each missed period is billed exactly once, up to the lead time
        # (the period starting 31 May is 6 days ahead, inside the 7-day lead).
        result = billing_run(on=date(2026, 5, 25))
        assert result.invoices == 1 and result.charges == 3
        periods = list(SubscriptionCharge.all_tenants.filter(subscription=sub, kind="recurring")
                       .order_by("period_start").values_list("period_start", "period_end"))  # fmt: skip
        assert periods == [
            (date(2026, 1, 31), date(2026, 2, 28)), (date(2026, 2, 28), date(2026, 3, 31)),
            (date(2026, 3, 31), date(2026, 4, 30)), (date(2026, 4, 30), date(2026, 5, 31)),
            (date(2026, 5, 31), date(2026, 6, 30)),
        ]  # fmt: skip
        sub.refresh_from_db()
        assert sub.current_period_start == date(2026, 4, 30) and sub.current_period_end == date(2026, 5, 31)

    def test_one_invoice_per_customer_and_currency(self, tenant_a):
        customer = customer_of(tenant_a)
        one = subscribe(tenant_a, make_product(tenant_a), customer=customer, start=date(2026, 3, 1))
        subscribe(tenant_a, make_product(tenant_a, name="Mail", amount="3.00"), customer=customer,
                  start=date(2026, 3, 1))  # fmt: skip
        result = billing_run(on=date(2026, 3, 28))
        assert result.invoices == 1 and result.charges == 2
        april = SubscriptionCharge.all_tenants.filter(period_start=date(2026, 4, 1)).select_related("invoice_line")
        assert len({c.invoice_line.invoice_id for c in april}) == 1  # both subscriptions on one invoice
        renewal = Invoice.all_tenants.get(pk=april[0].invoice_line.invoice_id)
        assert renewal.total == D("13.00") and first_invoice(one).total == D("15.00")

    def test_cancel_at_period_end_stops_billing_and_ends_it(self, tenant_a):
        sub = subscribe(tenant_a, make_product(tenant_a), start=date(2026, 3, 1))
        with tenant_a.scope():
            subscriptions.subscription_cancel(sub=sub, at_period_end=True)
        assert billing_run(on=date(2026, 3, 28)).invoices == 0
        assert billing_run(on=date(2026, 4, 1)).cancelled == 1
        sub.refresh_from_db()
        assert sub.status == "cancelled"

    def test_proration_up_is_charged_next_and_down_is_credited_now(self, tenant_a):
        customer = customer_of(tenant_a)
        sub = subscribe(tenant_a, make_product(tenant_a), customer=customer, start=date(2026, 4, 1))  # 30 days
        with tenant_a.scope():
            subscriptions.subscription_change(sub=sub, quantity=3, on=date(2026, 4, 16))  # 15 of 30 days left
        charge = SubscriptionCharge.all_tenants.get(subscription=sub, kind="proration")
        assert charge.amount == D("10.00")  # (30 - 10) x 15/30
        billing_run(on=date(2026, 4, 24))
        charge.refresh_from_db()
        renewal = charge.invoice_line.invoice
        assert renewal.total == D("40.00")  # 30.00 for May + 10.00 proration
        with tenant_a.scope():
            subscriptions.subscription_change(sub=sub, quantity=1, on=date(2026, 4, 24))  # 7 of 30 days left
        assert credit.credit_balance(customer=customer, currency="EUR") == D("4.67")  # 20 x 7/30

    def test_usage_is_deduplicated_and_billed_once(self, tenant_a):
        product = make_product(tenant_a, name="Bandwidth", metering={"unit": "GB", "unit_prices": {"EUR": "0.05"}})
        sub = subscribe(tenant_a, product, start=date(2026, 3, 1))
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        url = reverse("subscription-usage", kwargs={"pk": sub.pk})
        body = {"quantity": "120.5", "idempotency_key": "u-1", "occurred_at": "2026-03-10T10:00:00Z"}
        assert admin.post(url, body, format="json").status_code == 201
        assert admin.post(url, body, format="json").status_code == 200
        assert admin.post(url, {**body, "idempotency_key": "u-2", "quantity": "9.5"}, format="json").status_code == 201
        assert admin.post(url, {"quantity": "1"}, format="json").status_code == 400
        assert UsageRecord.all_tenants.count() == 2
        billing_run(on=date(2026, 3, 25))
        usage = SubscriptionCharge.all_tenants.get(subscription=sub, kind="usage")
        assert usage.amount == D("6.50") and usage.invoice_line is not None  # 130 GB x 0.05
        billing_run(on=date(2026, 3, 26))
        assert SubscriptionCharge.all_tenants.filter(kind="usage").count() == 1

    def test_usage_on_an_unmetered_product_is_409(self, tenant_a):
        sub = subscribe(tenant_a, make_product(tenant_a))
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = admin.post(reverse("subscription-usage", kwargs={"pk": sub.pk}),
                              {"quantity": "1", "idempotency_key": "k"}, format="json")  # fmt: skip
        assert response.status_code == 409


@pytest.mark.django_db(transaction=True)
def test_two_billing_runs_at_once_bill_each_period_once(tenant_a):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    product = make_product(tenant_a)
    for i in range(6):
        subscribe(tenant_a, product, customer=customer_of(tenant_a, email=f"c{i}@example.com"), start=date(2026, 3, 1))
    barrier = threading.Barrier(2)
    errors = []

    def run():
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            billing_run(on=date(2026, 4, 20))
        except Exception as exc:  # asserted below
            errors.append(exc)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    recurring = SubscriptionCharge.all_tenants.filter(kind="recurring")
    # March (the first invoice) and April (inside the 7-day lead on 20 April): once each, not twice.
    assert recurring.count() == 6 * 2
    assert Invoice.all_tenants.count() == 6 * 2


@pytest.mark.django_db
class TestDunning:
    def overdue(self, fx, **conf):
        from apps.billing.models import BillingSettings

        BillingSettings.objects.update_or_create(tenant=fx.tenant, defaults={
            "reminder_days_before": [3], "reminder_days_after": [1, 7], "suspend_after_days": 10,
            "terminate_after_days": 30, **conf})  # fmt: skip
        sub = subscribe(fx, make_product(fx), start=date(2026, 3, 1))
        billing_run(on=date(2026, 3, 25))
        renewal = Invoice.all_tenants.filter(status="open").get()
        Invoice.all_tenants.filter(pk=renewal.pk).update(due_date=date(2026, 4, 1))
        return sub, Invoice.all_tenants.get(pk=renewal.pk)

    def test_reminders_past_due_suspend_then_payment_resumes(self, tenant_a, django_capture_on_commit_callbacks):
        sub, invoice = self.overdue(tenant_a)
        with django_capture_on_commit_callbacks(execute=True):
            assert dunning_run(on=date(2026, 3, 29)) == {"before": 1}
            assert dunning_run(on=date(2026, 3, 30)) == {}
            assert dunning_run(on=date(2026, 4, 2)) == {"past_due": 1, "after": 1}
        sub.refresh_from_db()
        assert sub.status == "past_due"
        assert [m.subject.split(" is ")[-1] for m in mail.outbox[-2:]] == ["due soon", "overdue"]
        dunning_run(on=date(2026, 4, 11))
        sub.refresh_from_db()
        assert sub.status == "suspended" and sub.suspension_reason == "nonpayment"
        assert Job.all_tenants.filter(type="subscription.suspend", object_id=str(sub.pk)).exists()
        with tenant_a.scope():
            payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="bank_transfer")
        sub.refresh_from_db()
        assert sub.status == "active"
        assert Job.all_tenants.filter(type="subscription.resume", object_id=str(sub.pk)).exists()
        assert dunning_run(on=date(2026, 5, 5)) == {}

    def test_staff_suspension_is_not_lifted_by_payment_and_terminate_cancels(self, tenant_a):
        sub, invoice = self.overdue(tenant_a)
        with tenant_a.scope():
            subscriptions.subscription_suspend(sub=sub)
        dunning_run(on=date(2026, 5, 2))
        sub.refresh_from_db()
        assert sub.status == "cancelled"
        steps = set(DunningNotice.all_tenants.filter(invoice=invoice).values_list("step", flat=True))
        assert {"past_due", "after:1", "after:7", "suspend", "terminate"} <= steps

    def test_a_paid_invoice_is_left_alone(self, tenant_a):
        sub, invoice = self.overdue(tenant_a)
        with tenant_a.scope():
            payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="cash")
        assert dunning_run(on=date(2026, 4, 20)) == {}
        sub.refresh_from_db()
        assert sub.status == "active"
        assert Invoice.all_tenants.get(pk=invoice.pk).status == InvoiceStatus.PAID

    def test_staff_suspension_survives_payment(self, tenant_a):
        sub, invoice = self.overdue(tenant_a)
        with tenant_a.scope():
            subscriptions.subscription_suspend(sub=sub)
            payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="cash")
        sub.refresh_from_db()
        assert sub.status == "suspended" and sub.suspension_reason == "operator"


@pytest.mark.django_db
def test_billing_run_command(tenant_a, capsys):
    from django.core.management import call_command

    subscribe(tenant_a, make_product(tenant_a), start=date(2026, 3, 1))
    call_command("billing_run", "--date", "2026-03-25")
    out = capsys.readouterr()
    assert "Invoiced: 1 invoice for 1 subscription" in out.out and "Invoicing customers" in out.err
    call_command("billing_run", "--date", "2026-03-25")
    assert "Invoiced: nothing (no period due)." in capsys.readouterr().out


@pytest.mark.django_db
def test_credit_that_pays_the_first_invoice_in_full_activates_the_subscription(
    tenant_a, django_capture_on_commit_callbacks
):
    """The customer's credit balance pays a new subscription's first invoice at issue: the invoice is
    paid, so the subscription is active and its activation job enqueued, as after a payment."""
    from tests.billing_support import issued

    customer = customer_of(tenant_a)
    overpaid = issued(tenant_a, customer=customer)
    with tenant_a.scope():
        payments.payment_record(invoice=overpaid, amount=overpaid.amount_due + D("100.00"), method="bank_transfer")
    assert credit.credit_balance(customer=customer, currency="EUR") == D("100.00")
    with django_capture_on_commit_callbacks(execute=True):
        sub = subscribe(tenant_a, make_product(tenant_a), customer=customer, pay=False)
    invoice = first_invoice(sub)
    assert invoice.status == InvoiceStatus.PAID and invoice.credit_applied == D("15.00")
    assert credit.credit_balance(customer=customer, currency="EUR") == D("85.00")
    assert sub.status == "active" and sub.activated_at
    assert Job.all_tenants.filter(type="subscription.activate", object_id=str(sub.pk)).exists()
