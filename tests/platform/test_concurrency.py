"""Concurrency on PostgreSQL for every counter and unique resource: many parallel writers (threads,
each with its own database connection, released together by a barrier), then the database is
read back: no duplicate, no over-commit, no half-written row, one audit event per real change.

Invoice numbers (gapless per tenant) and payments are in tests/billing/test_billing_concurrency.py, two
billing runs at once in tests/billing/test_billing_subscriptions.py; DNS zone names are the DNS module's.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection

from apps.audit.models import AuditEvent
from apps.billing.models import UsageRecord
from apps.billing.services import subscriptions
from apps.cloudpods import services as pod_services
from apps.cloudpods.models import CloudPod
from apps.common.exceptions import Conflict, InvalidInput
from apps.domains import services as domain_services
from apps.domains.models import Domain
from apps.nodes.models import Node
from apps.websites import services as website_services
from apps.websites.models import Website, WebsiteDomain
from tests.billing.test_billing_concurrency import run_parallel
from tests.billing.test_billing_subscriptions import make_product, subscribe
from tests.pods_support import node_in
from tests.web_support import web_node_in

WRITERS = 12

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")


def collect(fn, items):
    """Run ``fn`` over ``items`` in parallel; answer (results, domain errors). Anything else fails."""
    results, domain_errors = [], []

    def call(item):
        try:
            results.append(fn(item))
        except (Conflict, InvalidInput) as exc:
            domain_errors.append(exc)

    assert run_parallel(call, items) == []
    return results, domain_errors


def test_one_website_per_hostname_across_tenants(tenant_a, tenant_b):
    nodes = {fx.tenant.pk: web_node_in(fx) for fx in (tenant_a, tenant_b)}

    def create(i):
        fx = (tenant_a, tenant_b)[i % 2]
        with fx.scope():
            return website_services.website_create(
                tenant=fx.tenant, primary_domain="shop.example.com", aliases=[f"a{i}.example.com"],
                node=nodes[fx.tenant.pk],
            )  # fmt: skip

    created, refused = collect(create, range(WRITERS))
    assert len(created) == 1 and len(refused) == WRITERS - 1
    # The winner's tenant's other tries hit the unique hostname (domain_taken); the other tenant's
    # hit the platform's name claim (name_taken, apps/names/claims.py), serialised by its lock.
    codes = sorted(e.code for e in refused)
    assert codes == ["domain_taken"] * (WRITERS // 2 - 1) + ["name_taken"] * (WRITERS // 2), codes
    # The losers left nothing: no website row, no hostname, no job, no audit event.
    assert Website.all_tenants.count() == 1
    assert list(WebsiteDomain.all_tenants.order_by("name").values_list("name", flat=True)) == sorted(
        ["shop.example.com", *created[0].aliases]
    )
    assert AuditEvent.objects.filter(action="website.create").count() == 1


def test_one_domain_per_name_in_a_tenant(tenant_a, tenant_b):
    def create(i):
        fx = tenant_a if i < WRITERS - 2 else tenant_b  # another tenant may hold it too (TXT proof decides)
        with fx.scope():
            return domain_services.domain_create(tenant=fx.tenant, name="Example.COM")

    created, refused = collect(create, range(WRITERS))
    assert len(created) == 2 and len(refused) == WRITERS - 2
    assert {d.tenant_id for d in created} == {tenant_a.tenant.pk, tenant_b.tenant.pk}
    assert Domain.all_tenants.filter(tenant=tenant_a.tenant, name="example.com").count() == 1
    assert Domain.all_tenants.filter(tenant=tenant_b.tenant, name="example.com").count() == 1
    assert AuditEvent.objects.filter(action="domain.create").count() == 2


def test_a_usage_key_counts_once_however_many_report_it(tenant_a):
    product = make_product(tenant_a, name="Bandwidth", metering={"unit": "GB", "unit_prices": {"EUR": "0.05"}})
    sub = subscribe(tenant_a, product, start=date(2026, 3, 1))

    def report(i):
        with tenant_a.scope():
            # Half the writers repeat one key, the others each send a key of their own.
            key = "same-key" if i % 2 else f"key-{i}"
            return subscriptions.usage_record(sub=sub, quantity=Decimal("2.5"), key=key)

    results, refused = collect(report, range(WRITERS))
    assert refused == []
    firsts = [record for record, created in results if created]
    assert len(firsts) == WRITERS // 2 + 1
    same = {record.pk for record, _created in results if record.idempotency_key == "same-key"}
    assert len(same) == 1  # every repeat answered the one stored record
    assert UsageRecord.all_tenants.filter(subscription=sub).count() == WRITERS // 2 + 1
    assert AuditEvent.objects.filter(action="subscription.usage").count() == WRITERS // 2 + 1


@pytest.fixture
def pods_not_run(monkeypatch):
    """Placement is the panel's side: the pods' jobs are stored, not run. (Run by the suite's worker,
    they started real containers under the default node root that nothing removed: four stray
    containers per `make test`.)"""
    from apps.jobs import services as job_services

    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


@pytest.mark.usefixtures("pods_not_run")
def test_placement_never_over_commits_a_node(tenant_a):
    room = 3  # pods of the plan that fit on the node, by memory
    plan = pod_services._plan("pod-xs")
    node = node_in(tenant_a, memory_mb=plan.memory_mb * room + plan.memory_mb // 2)

    def create(i):
        with tenant_a.scope():
            return pod_services.pod_create(tenant=tenant_a.tenant, name=f"pod-{i}", plan="pod-xs")

    created, refused = collect(create, range(WRITERS))
    assert len(created) == room
    assert len(refused) == WRITERS - room and all(e.code == "no_capacity" for e in refused)
    node = Node.all_tenants.get(pk=node.pk)
    pods = CloudPod.all_tenants.filter(node=node)
    assert pods.count() == room
    # The node's counters are exactly the sum of the pods placed on it.
    assert node.allocated_pods == room
    assert node.allocated_memory_mb == sum(p.memory_mb for p in pods) <= node.memory_mb
    assert node.allocated_vcpu == sum(p.vcpu for p in pods)
    assert node.allocated_disk_gb == sum(p.disk_gb for p in pods)


@pytest.mark.usefixtures("pods_not_run")
def test_parallel_pods_of_one_name_make_one_pod(tenant_a):
    node_in(tenant_a)

    def create(i):
        with tenant_a.scope():
            return pod_services.pod_create(tenant=tenant_a.tenant, name="the-one", plan="pod-xs")

    created, refused = collect(create, range(WRITERS))
    assert len(created) == 1 and len(refused) == WRITERS - 1
    assert CloudPod.all_tenants.filter(name="the-one").count() == 1
    node = Node.all_tenants.get()
    assert node.allocated_pods == 1
