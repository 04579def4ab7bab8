"""Account backups: a customer policy backs up the customer's whole hosting account as it is at
each run (its websites here; databases, mailboxes and their zones the same way) as one snapshot
set, tagged ``set-<id>`` in restic, listed by ``?set_id=`` and restorable part by part. A hosting
plan with ``backups`` makes that policy (and the customer's own repository) by itself; the bytes
the customer's repository holds are reported daily as usage of products that meter
``backup_storage``. Real restic and nginx."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

from datetime import date
from decimal import ROUND_UP, Decimal

import pytest

from apps.backups import services
from apps.backups.models import BackupPolicy, BackupRepository, Snapshot
from apps.billing.models import Subscription, SubscriptionStatus, UsageRecord
from apps.catalog.services import product_create
from apps.hosting import provisioning
from apps.websites.models import Website
from tests.backups_support import Flow, backup_node_in, restic_bin, tree  # noqa: F401  (fixtures)
from tests.billing_support import customer_of
from tests.hosting.test_backups_restic import restic_snapshots, site_dir
from tests.hosting_support import plan_in
from tests.web_support import nginx_node, web_root  # noqa: F401

pytestmark = pytest.mark.django_db


def site_for(flow: Flow, domain: str, customer=None) -> Website:
    body = {"primary_domain": domain, "https": False, **({"customer": str(customer.pk)} if customer else {})}
    made = flow("post", "website-list", body, expect=201).json()
    return Website.all_tenants.get(pk=made["id"])


def subscription_of(fx, product, customer) -> Subscription:
    today = date.today()
    with fx.scope():
        return Subscription.objects.create(customer=customer, product=product, status=SubscriptionStatus.ACTIVE,
                                           currency="EUR", unit_price=Decimal("5.00"), cycle="monthly",
                                           anchor_date=today, current_period_start=today,
                                           current_period_end=date(today.year + 1, 1, 1),
                                           billed_through=today)  # fmt: skip


def test_account_backup_is_one_snapshot_set_restorable_per_part_and_plans_make_the_policy(
    tenant_a, nginx_node, restic_bin, django_capture_on_commit_callbacks
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    backup_node_in(tenant_a)
    customer = customer_of(tenant_a, email="acct@example.com")
    one, two = site_for(flow, "one.example.com", customer), site_for(flow, "two.example.com", customer)
    other = site_for(flow, "other.example.com")
    for site in (one, two, other):
        (site_dir(nginx_node.root, site) / "public").mkdir(parents=True, exist_ok=True)
        (site_dir(nginx_node.root, site) / "public" / "index.html").write_text(site.primary_domain)

    # A plan with backups: its activation makes the customer's repository and account policy.
    plan = plan_in(tenant_a, "backed-up", config={"websites": 5, "backups_kept": 4})
    sub = subscription_of(tenant_a, plan, customer)
    with django_capture_on_commit_callbacks(execute=True):
        policy = provisioning.plan_backups(sub)
    assert policy is not None and policy.customer_id == customer.pk and policy.keep_last == 4
    repo = BackupRepository.all_tenants.get(pk=policy.repository_id)
    assert repo.customer_id == customer.pk and repo.status == "active"
    with django_capture_on_commit_callbacks(execute=True):
        assert provisioning.plan_backups(sub).pk == policy.pk  # again: the same policy
    assert BackupPolicy.all_tenants.filter(customer=customer).count() == 1

    # One run: one snapshot per part of the account, one set, tagged in restic.
    made = flow("post", "backup-policy-run", pk=policy.pk, expect=202).json()
    assert sorted(s["resource_label"] for s in made) == ["one.example.com", "two.example.com"]
    set_id = made[0]["set_id"]
    assert set_id and {s["set_id"] for s in made} == {set_id}
    listed = flow("get", "backup-snapshot-list", query=f"?set_id={set_id}", expect=200).json()
    assert listed["count"] == 2 and {s["status"] for s in listed["results"]} == {"done"}
    tagged = [s for s in restic_snapshots(repo) if f"set-{set_id.replace('-', '')}" in (s.get("tags") or [])]
    assert len(tagged) == 2

    # Restored per part: one site back, the other untouched.
    before_one, before_two = tree(site_dir(nginx_node.root, one)), tree(site_dir(nginx_node.root, two))
    (site_dir(nginx_node.root, one) / "public" / "index.html").write_text("defaced")
    (site_dir(nginx_node.root, two) / "public" / "new.txt").write_text("kept")
    part = next(s for s in listed["results"] if s["resource_label"] == "one.example.com")
    assert flow.restore(part)["status"] == "done"
    assert tree(site_dir(nginx_node.root, one)) == before_one
    assert tree(site_dir(nginx_node.root, two)) != before_two

    # Deleting a site of the account: its final snapshot comes from the customer's policy.
    flow("delete", "website-detail", pk=two.pk, expect=202)
    assert Snapshot.all_tenants.filter(resource_id=two.pk, reason="final", status="done").count() == 1

    # Usage: the customer's stored bytes, once a day, on a product that meters backup storage.
    repo.refresh_from_db()
    assert repo.size_bytes > 0
    with tenant_a.scope():
        storage = product_create(tenant=tenant_a.tenant, data={
            "name": "Backup storage", "slug": "backup-storage", "type": "service", "visibility": "public",
            "metering": {"meter": "backup_storage", "unit": "GB-day", "unit_prices": {"EUR": "0.01"}},
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("0"), "setup_fee": Decimal(0)}],
        })  # fmt: skip
    assert storage.metering["meter"] == "backup_storage"
    metered = subscription_of(tenant_a, storage, customer)
    assert services.report_storage_usage(date(2026, 12, 3)) == 1
    assert services.report_storage_usage(date(2026, 12, 3)) == 0  # the same day again: nothing twice
    record = UsageRecord.all_tenants.get(subscription=metered)
    assert record.quantity == (Decimal(repo.size_bytes) / Decimal(10**9)).quantize(Decimal("0.001"), ROUND_UP)
    assert record.quantity > 0
    assert other.pk not in {s.resource_id for s in Snapshot.all_tenants.filter(set_id__isnull=False)}
