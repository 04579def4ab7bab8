"""Bandwidth: the bytes each website served, read by the node from the site's own nginx access log
(real nginx; rotation-safe), added to the hosting account's usage for the subscription's period;
quota crossings (80 % and 100 %, disk and bandwidth) notify once per crossing (email + to-do); a plan
that bills overage reports the period's bandwidth over the plan as a usage record, once."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail

from agent import bandwidth
from agent.web import WebRuntime
from apps.billing.models import Subscription, UsageRecord
from apps.billing.services.subscriptions import subscription_create
from apps.catalog.services import product_update
from apps.common.exceptions import InvalidInput
from apps.hosting import services
from apps.hosting.models import Todo, TodoKind
from tests.billing_support import customer_of
from tests.hosting_support import plan_in
from tests.web_support import nginx_node, web_node_in, web_root  # noqa: F401  (fixtures)

GB = 1024**3


def served(root, site_id: str, want: int, timeout: float = 5) -> None:
    """Wait until nginx has written ``want`` lines to the site's log (it writes after the answer)."""
    log = bandwidth.log_path(root, site_id)

    def lines() -> int:
        return log.read_bytes().count(b"\n") if log.exists() else 0

    deadline = time.monotonic() + timeout
    while lines() < want and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lines() >= want, f"nginx wrote {lines()} lines to {log.name}, {want} awaited"


def settled(root, site_id: str, quiet: float = 0.3, timeout: float = 5) -> None:
    """Wait until the site's log has not grown for ``quiet`` seconds: the line of an answer a client
    already has may still be on its way (under load, after the next read of the log)."""
    log = bandwidth.log_path(root, site_id)
    size, since, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = log.stat().st_size if log.exists() else 0
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.02)


def test_bytes_served_are_read_once_and_across_a_rotation(nginx_node):  # noqa: F811
    web = WebRuntime(nginx_node.root / "web")
    web.site_ensure({"id": "wbytes", "domains": ["bytes.example"], "status": "active"})
    body = "x" * 1000
    (nginx_node.root / "web" / "www" / "wbytes" / "public" / "index.html").write_text(body)
    assert nginx_node.wait_until("bytes.example", 200, contains=body)[0] == 200
    root = nginx_node.root / "web"
    settled(root, "wbytes")
    bandwidth.site_bandwidth(root, "wbytes")  # forget the waiting requests
    log = bandwidth.log_path(root, "wbytes")
    before = log.read_bytes().count(b"\n")  # the waiting requests' lines are in the log too
    for _ in range(3):
        assert nginx_node.get("bytes.example")[0] == 200
    served(root, "wbytes", before + 3)
    first = bandwidth.site_bandwidth(root, "wbytes")
    assert first["bytes"] == 3000 and first["requests"] == 3
    assert bandwidth.site_bandwidth(root, "wbytes")["bytes"] == 0  # read once

    # logrotate: the log is moved away; nginx writes to it until told to reopen, then to a new one.
    lines = log.read_bytes().count(b"\n")
    assert nginx_node.get("bytes.example")[0] == 200
    served(root, "wbytes", lines + 1)
    log.rename(log.with_name(log.name + ".1"))
    nginx_node.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert nginx_node.get("bytes.example")[0] == 200
    served(root, "wbytes", 1)
    after = bandwidth.site_bandwidth(root, "wbytes")
    assert after["bytes"] == 2000 and after["requests"] == 2  # the old file's tail and the new file

    # A line nginx has not finished is left for the next read; a truncated log is read from its start.
    with open(log, "ab") as f:
        f.write(b'127.0.0.1 - - [x] "GET / HTTP/1.1" 200 500 "-" "-"')
    assert bandwidth.site_bandwidth(root, "wbytes")["bytes"] == 0
    with open(log, "ab") as f:
        f.write(b"\n")
    assert bandwidth.site_bandwidth(root, "wbytes")["bytes"] == 500
    log.write_bytes(b'127.0.0.1 - - [x] "GET / HTTP/1.1" 200 7 "-" "-"\n')
    assert bandwidth.site_bandwidth(root, "wbytes")["bytes"] == 7


def account_with(fx, config: dict, metering: dict | None = None):
    web_node_in(fx)
    plan = plan_in(fx, slug="metered", config=config)
    with fx.scope():
        if metering:
            plan = product_update(product=plan, data={"metering": metering})
        customer = customer_of(fx, email="metered@example.com")
        sub = subscription_create(tenant=fx.tenant, customer=customer, product=plan, cycle="monthly", bill_now=False)
        Subscription.all_tenants.filter(pk=sub.pk).update(status="active")
        sub.refresh_from_db()
        return services.account_activate(sub)


@pytest.mark.django_db
def test_quota_crossings_notify_once_each_and_overage_is_billed_once_per_period(
    tenant_a, django_capture_on_commit_callbacks
):
    account = account_with(tenant_a, {"bandwidth_gb": 10, "disk_quota_mb": 100, "overage": "bandwidth_gb"},
                           {"unit": "GB", "unit_prices": {"EUR": "0.10"}})  # fmt: skip
    mail.outbox.clear()
    capture = django_capture_on_commit_callbacks

    def measure(disk_mb: int, served_bytes: int):
        with capture(execute=True), tenant_a.scope():
            return services.account_record_disk(account=account, used_mb=disk_mb, served_bytes=served_bytes)

    def quota_todos() -> list[str]:
        return sorted(Todo.all_tenants.filter(kind=TodoKind.QUOTA).values_list("key", flat=True))

    measure(10, 1 * GB)
    assert mail.outbox == [] and quota_todos() == []
    acc = measure(85, 8 * GB)  # disk 85 % and bandwidth 9 GB of 10: two early warnings
    assert acc.bandwidth_used_bytes == 9 * GB and acc.quota_levels == {"disk_quota_mb": 80, "bandwidth_gb": 80}
    assert sorted(m.subject for m in mail.outbox) == [
        f"Hosting account {acc} has used 80 % of its bandwidth quota",
        f"Hosting account {acc} has used 80 % of its disk quota",
    ]
    measure(86, 0)  # still there: nothing again
    assert len(mail.outbox) == 2 and len(quota_todos()) == 2
    measure(86, 3 * GB)  # 12 GB of 10: over
    assert len(mail.outbox) == 3 and "over its bandwidth quota" in mail.outbox[-1].subject
    assert f"quota:bandwidth_gb:100:{acc.pk}" in quota_todos()
    measure(50, 0)  # disk back under 80 %: its level drops, so the next crossing notifies again
    measure(90, 0)
    assert len(mail.outbox) == 4 and "80 % of its disk quota" in mail.outbox[-1].subject

    # The period ends: its 2 GB over the plan become one usage record, never two.
    sub = Subscription.all_tenants.get(pk=acc.subscription_id)
    start, end = sub.current_period_end, sub.current_period_end + timedelta(days=30)
    Subscription.all_tenants.filter(pk=sub.pk).update(current_period_start=start, current_period_end=end)
    acc = measure(90, 1000)
    record = UsageRecord.all_tenants.get(subscription=sub)
    assert record.quantity == Decimal("2.000")
    assert record.idempotency_key == f"overage:bandwidth_gb:{sub.current_period_start}"
    assert acc.bandwidth_used_bytes == 1000 and acc.bandwidth_period_start == start
    with tenant_a.scope():
        acc.bandwidth_period_start = sub.current_period_start
        acc.bandwidth_used_bytes = 12 * GB
        services.bill_overage(acc, Subscription.all_tenants.get(pk=sub.pk))
    assert UsageRecord.all_tenants.filter(subscription=sub).count() == 1
    assert services.account_usage(acc)["bandwidth_gb"] == {"used": 12, "limit": 10}


@pytest.mark.django_db
def test_disk_overage_is_billed_on_the_periods_peak_once(tenant_a, django_capture_on_commit_callbacks):
    """Files deleted before the period ends do not hide the month over the quota: the peak is billed
    (per GB of 1024 MB, rounded up to three decimals), once, and the next period starts from its own."""
    account = account_with(tenant_a, {"disk_quota_mb": 1024, "overage": "disk_quota_mb"},
                           {"unit": "GB", "unit_prices": {"EUR": "0.50"}})  # fmt: skip

    def measure(disk_mb: int):
        with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
            return services.account_record_disk(account=account, used_mb=disk_mb)

    measure(900)
    assert measure(2560).disk_peak_mb == 2560
    acc = measure(1000)  # cleaned up before the period's end
    assert acc.disk_peak_mb == 2560 and acc.disk_used_mb == 1000
    sub = Subscription.all_tenants.get(pk=acc.subscription_id)
    first = sub.current_period_start
    start, end = sub.current_period_end, sub.current_period_end + timedelta(days=30)
    Subscription.all_tenants.filter(pk=sub.pk).update(current_period_start=start, current_period_end=end)
    acc = measure(1000)
    record = UsageRecord.all_tenants.get(subscription=sub)
    assert record.quantity == Decimal("1.500") and record.idempotency_key == f"overage:disk_quota_mb:{first}"
    assert acc.disk_peak_mb == 1000 and acc.bandwidth_period_start == start  # the new period's own peak
    measure(1000)
    assert UsageRecord.all_tenants.filter(subscription=sub).count() == 1  # under the quota: nothing more


@pytest.mark.django_db
def test_overage_names_a_known_quota(tenant_a):
    with pytest.raises(InvalidInput, match="overage"):
        plan_in(tenant_a, slug="bad", config={"bandwidth_gb": 1, "overage": "bandwith"})
