"""`make bench` (billing part): figures, never pass/fail. Prints a table and merges the figures into var/bench.json.

Needs DATABASE_URL (PostgreSQL); `make bench` starts a throwaway one. Sizes from the environment:
BENCH_SUBSCRIPTIONS (default 100000), BENCH_WEBHOOKS (default 2000).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpanel.settings")
# Jobs and emails go to the broker (no worker here): the figures are the billing run's own.
os.environ.setdefault("MPANEL_JOBS_EAGER", "0")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from apps.billing.models import Invoice, Subscription, WebhookEvent  # noqa: E402
from apps.billing.services import invoices  # noqa: E402
from apps.billing.services.billing_run import billing_run  # noqa: E402
from apps.billing.services.webhooks import sign_generic  # noqa: E402
from apps.catalog.services import product_create  # noqa: E402
from apps.customers.models import Customer  # noqa: E402
from apps.tenancy.models import Tenant  # noqa: E402
from apps.tenancy.scoping import tenant_scope  # noqa: E402


def bench_billing_run(n: int) -> dict:
    tenant = Tenant.objects.create(name=f"Bench {time.time_ns()}")
    anchor = date(2026, 1, 15)
    with tenant_scope(tenant):
        product = product_create(tenant=tenant, data={
            "name": "Bench plan", "slug": "bench", "type": "hosting_plan",
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("9.99"), "setup_fee": Decimal(0)}],
        })  # fmt: skip
        customers = Customer.objects.bulk_create(
            [Customer(tenant=tenant, name=f"C{i}", email=f"c{i}@bench.example", currency="EUR") for i in range(n)],
            batch_size=5000,
        )
        Subscription.objects.bulk_create(
            [Subscription(tenant=tenant, customer=c, product=product, status="active", currency="EUR",
                          cycle="monthly", unit_price=Decimal("9.99"), anchor_date=anchor,
                          current_period_start=anchor, current_period_end=date(2026, 2, 15),
                          billed_through=date(2026, 2, 15)) for c in customers],
            batch_size=5000,
        )  # fmt: skip
    on = date(2026, 2, 10)
    started = time.perf_counter()
    first = billing_run(on=on)
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    second = billing_run(on=on)
    again = time.perf_counter() - started
    return {
        "subscriptions": n,
        "invoices": first.invoices,
        "seconds": round(elapsed, 2),
        "invoices_per_second": round(first.invoices / elapsed, 1) if elapsed else None,
        "second_run_invoices": second.invoices,
        "second_run_seconds": round(again, 2),
    }


def profiled():
    """BENCH_PROFILE=1: a cProfile of the measured loop, printed to stderr (its figures are then slower)."""
    if not os.environ.get("BENCH_PROFILE"):
        return None
    import cProfile

    profile = cProfile.Profile()
    profile.enable()
    return profile


def report(profile, what: str) -> None:
    if profile is None:
        return
    import pstats

    profile.disable()
    print(f"--- profile: {what}", file=sys.stderr)
    pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(30)


def _webhook_invoice(n: int):
    """An issued invoice of ``n`` (EUR) that ``n`` payments of 1.00 settle."""
    tenant = Tenant.objects.create(name=f"Bench webhooks {time.time_ns()}")
    with tenant_scope(tenant):
        customer = Customer.objects.create(name="W", email="w@bench.example", currency="EUR")
        invoice = invoices.invoice_create(tenant=tenant, customer=customer, currency="EUR", lines=[
            {"description": "Credit top-up", "quantity": 1, "unit_price": Decimal(n)}])  # fmt: skip
        return invoices.invoice_issue(invoice=invoice)


def _deliver(client: Client, secret: str, invoice, event_id: str) -> None:
    body = json.dumps(
        {
            "id": event_id,
            "type": "payment.succeeded",
            "data": {"invoice_id": str(invoice.pk), "amount": "1.00", "currency": "EUR", "reference": event_id},
        }
    ).encode()
    response = client.post("/api/v1/billing/webhooks/generic", body, content_type="application/json",
                           HTTP_X_MPANEL_SIGNATURE=sign_generic(body, secret))  # fmt: skip
    assert response.status_code == 200, response.content


def _wait_applied(prefix: str, invoice, n: int) -> None:
    pending = WebhookEvent.objects.filter(event_id__startswith=prefix, status=WebhookEvent.Status.RECEIVED)
    deadline = time.monotonic() + 600
    while pending.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{pending.count()} webhook events were not applied")
        time.sleep(0.02)
    paid = Invoice.all_tenants.get(pk=invoice.pk).amount_paid
    assert paid == n, f"{n} payments of 1.00 applied as {paid}"


def bench_webhooks(n: int) -> dict:
    """n signed deliveries: answered (stored, acknowledged; applied by a worker when jobs go to the broker,
    as `make bench` runs them, else before the answer) and applied end to end (all n events applied)."""
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = secret = "bench-secret"
    invoice = _webhook_invoice(n)
    run = time.time_ns()
    client = Client()
    profile = profiled()
    started = time.perf_counter()
    for i in range(n):
        _deliver(client, secret, invoice, f"evt-{run}-{i}")
    answered = time.perf_counter() - started
    report(profile, "webhook deliveries (answer)")
    _wait_applied(f"evt-{run}-", invoice, n)
    applied = time.perf_counter() - started
    paid = Invoice.all_tenants.get(pk=invoice.pk).amount_paid
    return {"events": n, "seconds": round(answered, 2), "events_per_second": round(n / answered, 1),
            "applied_seconds": round(applied, 2), "applied_per_second": round(n / applied, 1),
            "amount_paid": str(paid)}  # fmt: skip


def webhook_answers_in_rounds(n: int, floor_delivery, rounds: int = 4) -> dict:
    """The answer alone, in ``rounds`` rounds alternating with ``floor_delivery(i)`` (n/rounds of each a
    round), so that a burst of load on a shared machine meets both sides. A fresh invoice takes these n
    payments; they are applied meanwhile by the worker, as during ``bench_webhooks``, and checked after."""
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = secret = "bench-secret"
    invoice = _webhook_invoice(n)
    run = time.time_ns()
    client = Client()
    spent = {"endpoint": 0.0, "floor": 0.0}
    done = 0
    for r in range(rounds):
        size = n // rounds + (1 if r < n % rounds else 0)
        started = time.perf_counter()
        for i in range(done, done + size):
            _deliver(client, secret, invoice, f"rnd-{run}-{i}")
        spent["endpoint"] += time.perf_counter() - started
        started = time.perf_counter()
        for i in range(done, done + size):
            floor_delivery(f"{run}-{i}")
        spent["floor"] += time.perf_counter() - started
        done += size
    _wait_applied(f"rnd-{run}-", invoice, n)
    return {"events_per_second": round(n / spent["endpoint"], 1), "floor_events_per_second":
            round(n / spent["floor"], 1), "rounds": rounds}  # fmt: skip


def main() -> None:
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
        sys.exit("make bench needs PostgreSQL (DATABASE_URL)")
    call_command("migrate", verbosity=0)
    settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["public"] = "1000000/min"
    results = {
        "billing_run": bench_billing_run(int(os.environ.get("BENCH_SUBSCRIPTIONS", 100000))),
    }
    # No worker here: the events are applied before the answer (`make bench` measures both, with a worker).
    settings.MPANEL_JOBS_EAGER = True
    results["webhooks"] = bench_webhooks(int(os.environ.get("BENCH_WEBHOOKS", 2000)))
    print(f"{'benchmark':<14} {'figure':<24} value")
    for name, figures in results.items():
        for key, value in figures.items():
            print(f"{name:<14} {key:<24} {value}")
    out = Path(settings.VAR_DIR) / "bench.json"
    if os.environ.get("BENCH_OUT"):
        out = Path(os.environ["BENCH_OUT"])
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing.update(results)
    out.write_text(json.dumps(existing, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
