"""``manage.py billing_run``: a progress bar, a report of what was invoiced, ended and dunned with totals
per currency, a dry run that shows the same and changes nothing, and no real run on a future day."""

from __future__ import annotations

import json
from datetime import date, timedelta
from io import StringIO

import pytest
from django.apps import apps
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.billing.models import BillingSettings, Invoice, InvoiceStatus, Subscription
from apps.billing.services import subscriptions
from apps.billing.services.billing_run import billing_run
from apps.common.display import money
from apps.customers.models import Customer
from apps.tenancy.scoping import all_tenants
from tests.billing.test_billing_subscriptions import make_product, subscribe

pytestmark = pytest.mark.django_db

ON = date(2026, 4, 11)
# Every table a run may write: billing's, the audit trail, jobs, customers (credit), orders, catalog.
APPS = ("billing", "audit", "jobs", "customers", "orders", "catalog", "cloudpods")


def customer(fx, name: str) -> Customer:
    with fx.scope():
        return Customer.objects.create(name=name, email=f"{name.lower()}@example.com", currency="EUR")


@pytest.fixture
def business(tenant_a):
    """On ``ON``: Ada's renewal (due 1 April) is 10 days late (past due, reminders, suspension), Bob's next
    period (from 15 April) is within the 7-day lead, Cy's subscription ends at its period's end."""
    with tenant_a.scope():
        BillingSettings.objects.update_or_create(tenant=tenant_a.tenant, defaults={
            "reminder_days_before": [3], "reminder_days_after": [1, 7], "suspend_after_days": 10,
            "terminate_after_days": 30})  # fmt: skip
    product = make_product(tenant_a)
    ada = subscribe(tenant_a, product, customer=customer(tenant_a, "Ada"), start=date(2026, 3, 1))
    bob = subscribe(tenant_a, product, customer=customer(tenant_a, "Bob"), start=date(2026, 3, 15), quantity=2)
    cy = subscribe(tenant_a, product, customer=customer(tenant_a, "Cy"), start=date(2026, 3, 1))
    with tenant_a.scope():
        subscriptions.subscription_cancel(sub=cy, at_period_end=True)
    billing_run(on=date(2026, 3, 25))  # Ada's renewal for April
    renewal = Invoice.all_tenants.get(customer__name="Ada", status=InvoiceStatus.OPEN)
    Invoice.all_tenants.filter(pk=renewal.pk).update(due_date=date(2026, 4, 1))
    return {"ada": ada, "bob": bob, "cy": cy, "renewal": renewal}


def tables() -> dict:
    """Every row of every table a run may touch, in full (an update shows as well as an insert)."""
    with all_tenants():
        return {
            model._meta.label: sorted(map(repr, model._base_manager.values_list()))
            for name in APPS
            for model in apps.get_app_config(name).get_models()
        }


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("billing_run", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_dry_run_shows_what_a_run_would_do_and_changes_nothing(business, django_capture_on_commit_callbacks):
    before = tables()
    with django_capture_on_commit_callbacks(execute=True) as queued:
        out, err = run("--date", ON.isoformat(), "--dry-run")
    assert tables() == before  # no row added, changed or removed: invoices, charges, audit events, jobs…
    assert queued == [] and mail.outbox == []  # …and no e-mail or job was queued for after a commit
    assert "DRY RUN" in out and "Nothing was saved" in out
    assert "Invoicing customers" in err and "Dunning open invoices" in err  # the progress bars

    # Bob: invoiced for his next period, with the amount as people read it.
    assert "Would invoice" in out
    bob_line = next(line for line in out.splitlines() if "Bob" in line and "2026-04-15" in line)
    assert "VPS Small x2 (monthly)" in bob_line and "2026-04-15 → 2026-05-14" in bob_line
    # Cy: ended at the period's end.
    assert "Would end (cancelled at period end)" in out and "Cy" in out
    # Ada: the overdue renewal's steps, down to the suspension of her subscription.
    assert "Would dun" in out
    ada_rows = [line for line in out.splitlines() if "Ada" in line]
    for step in ("past due", "reminder: overdue (1 day late)", "reminder: overdue (7 days late)", "suspended"):
        assert any(step in line for line in ada_rows), (step, out)
    assert "Dunning would take: 2 reminders e-mailed, 1 subscription marked past due, 1 subscription suspended" in out

    # The real run does what the dry run said, and reports it the same way.
    with django_capture_on_commit_callbacks(execute=True):
        real, _err = run("--date", ON.isoformat())
    invoice = Invoice.all_tenants.get(customer__name="Bob", lines__period_start=date(2026, 4, 15))
    total = money(invoice.total, "EUR")
    assert f"Would invoice: 1 invoice for 1 subscription (1 charge); total {total} (1 invoice)." in out
    assert f"Invoiced: 1 invoice for 1 subscription (1 charge); total {total} (1 invoice)." in real
    assert "Ended at period end: 1 subscription." in real
    assert "Dunning: 2 reminders e-mailed, 1 subscription marked past due, 1 subscription suspended." in real
    assert invoice.number in real
    assert Subscription.all_tenants.get(pk=business["ada"].pk).status == "suspended"
    assert Subscription.all_tenants.get(pk=business["cy"].pk).status == "cancelled"


def test_json_is_the_summary_of_the_dry_run_and_of_the_run(business):
    dry = json.loads(run("--date", ON.isoformat(), "--dry-run", "--json")[0])
    real = json.loads(run("--date", ON.isoformat(), "--json")[0])
    assert dry.pop("dry_run") is True and real.pop("dry_run") is False
    assert dry == real
    assert (real["invoices"], real["subscriptions"], real["cancelled"], real["date"]) == (1, 1, 1, ON.isoformat())
    assert real["dunning"] == {"past_due": 1, "after": 2, "suspend": 1}
    assert real["dunning_subscriptions"] == {"past_due": 1, "suspend": 1}
    assert set(real["totals"]) == {"EUR"}
    again = json.loads(run("--date", ON.isoformat(), "--json")[0])  # safe to run again: nothing left to do
    assert (again["invoices"], again["dunning"]) == (0, {})


def test_a_future_day_is_only_a_dry_run(business):
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    before = tables()
    with pytest.raises(CommandError, match=r"in the future.*--dry-run"):
        run("--date", tomorrow)
    assert tables() == before
    out, _err = run("--date", tomorrow, "--dry-run", "--no-dunning")
    assert "DRY RUN" in out and "Dunning: not run (--no-dunning)." in out
    assert tables() == before


@pytest.mark.parametrize("args, message", [
    (("--date", "11/04/2026"), "--date must be YYYY-MM-DD"),
    (("--limit", "-1"), "--limit must be 0"),
])  # fmt: skip
def test_bad_options_are_refused(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_nothing_due_says_so_and_tables_are_capped(business):
    out, _err = run("--date", date(2026, 3, 26).isoformat(), "--no-dunning")
    assert "Invoiced: nothing (no period due)." in out
    out, _err = run("--date", ON.isoformat(), "--dry-run", "--limit", "1")
    assert "(Tables list at most 1 row each; --limit 0 lists all.)" in out
    assert sum("Ada" in line for line in out.splitlines()) == 1  # one dunning row listed of four
