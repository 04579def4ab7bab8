"""CloudPods through the API, without touching a node: jobs are stored but not dispatched here
(tests/hosting/test_cloudpods_runc.py runs them on a real worker and a real runc)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.cloudpods import services
from apps.cloudpods.api import CloudPodViewSet
from apps.cloudpods.models import CloudPod, PodStatus
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.nodes.models import Node, NodeStatus
from apps.tenancy.roles import ORDERED, Role
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for
from tests.pods_support import node_in, pod_in


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    """Jobs are committed but never sent: these tests look at the panel's side only."""
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


class TestCloudPodApi(ApiTestCase):
    viewset = CloudPodViewSet
    basename = "cloudpod"
    roles = {
        "list": Role.BILLING,
        "retrieve": Role.BILLING,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }
    success = {"destroy": 202}

    def make(self, fx, seq):
        return pod_in(fx, seq, status=PodStatus.SUSPENDED)  # no container: GET reads "absent" from the node

    def create_payload(self, fx, seq):
        node_in(fx)
        return {"name": f"web-{seq}", "plan": "pod-xs"}

    def update_payload(self, fx, obj, seq):
        return {"name": f"renamed-{seq}"}


def url(pod=None, action=None) -> str:
    if pod is None:
        return reverse("cloudpod-list")
    if action:
        return reverse(f"cloudpod-{action}", kwargs={"pk": pod.pk})
    return reverse("cloudpod-detail", kwargs={"pk": pod.pk})


def fresh(pod) -> CloudPod:
    return CloudPod.all_tenants.get(pk=pod.pk)


def fresh_node(node) -> Node:
    return Node.all_tenants.get(pk=node.pk)


@pytest.mark.django_db
class TestCreate:
    def test_create_reserves_capacity_and_stores_a_provision_job(self, tenant_a):
        node = node_in(tenant_a)
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = client.post(url(), {"name": "Web-1", "plan": "pod-s"}, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["status"] == "pending" and body["node"] == str(node.pk) and body["plan"] == "pod-s"
        assert body["name"] == "web-1" and body["image"] == "busybox" and body["memory_mb"] == 256
        node = fresh_node(node)
        assert (node.allocated_vcpu, node.allocated_memory_mb, node.allocated_disk_gb, node.allocated_pods) == (
            Decimal("1"),
            256,
            2,
            1,
        )
        job = Job.all_tenants.get(type="cloudpod.provision")
        assert job.payload == {"pod": body["id"]} and job.object_id == body["id"]
        assert AuditEvent.objects.filter(action="cloudpod.create", object_id=body["id"]).exists()

    def test_plans(self, tenant_a):
        response = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant).get("/api/v1/cloudpods/plans/")
        assert response.status_code == 200
        names = [p["name"] for p in response.json()]
        assert names == ["pod-xs", "pod-s", "pod-m", "pod-l"]
        assert set(response.json()[0]) >= {"name", "vcpu", "memory_mb", "disk_gb", "pids"}
        assert (
            client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant).get("/api/v1/cloudpods/plans/").status_code == 403
        )
        assert client_for().get("/api/v1/cloudpods/plans/").status_code == 401

    def test_bad_input_is_400(self, tenant_a):
        node_in(tenant_a)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        for bad in (
            {"name": "x", "plan": "pod-huge"},
            {"name": "x", "plan": "pod-xs", "image": "windows"},
            {"name": "Not A Hostname!", "plan": "pod-xs"},
            {"name": "x", "plan": "pod-xs", "subscription": "bad ref with spaces"},
            {"plan": "pod-xs"},
            {"name": "x"},
        ):
            response = client.post(url(), bad, format="json")
            assert response.status_code == 400, (bad, response.content)
        assert client.post(url(), {"name": "x", "plan": "pod-xs"}, format="json").status_code == 201
        dup = client.post(url(), {"name": "x", "plan": "pod-xs"}, format="json")
        assert dup.status_code == 400 and "name" in dup.json()
        with tenant_a.scope():
            assert CloudPod.objects.count() == 1
            assert Job.objects.count() == 1

    def test_no_room_is_409_and_reserves_nothing(self, tenant_a, tenant_b):
        node = node_in(tenant_a, memory_mb=300)
        node_in(tenant_b, "b-big")  # another tenant's room is not ours
        client = client_for(tenant_a.owner, tenant_a.tenant)
        assert client.post(url(), {"name": "a", "plan": "pod-s"}, format="json").status_code == 201
        response = client.post(url(), {"name": "b", "plan": "pod-s"}, format="json")
        assert response.status_code == 409 and response.json()["code"] == "no_capacity"
        assert fresh_node(node).allocated_memory_mb == 256
        assert client.post(url(), {"name": "c", "plan": "pod-xs"}, format="json").status_code == 409  # 44 MB left

    def test_placement_rule_spreads_and_skips_unfit_nodes(self, tenant_a):
        big = node_in(tenant_a, "big", memory_mb=4096)
        small = node_in(tenant_a, "small", memory_mb=2048)
        node_in(tenant_a, "draining", memory_mb=100000, status=NodeStatus.DRAINING)
        node_in(tenant_a, "web-only", memory_mb=100000, roles=["web"])
        node_in(tenant_a, "no-slots", memory_mb=100000, max_pods=0)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        placed = []
        for i in range(6):
            response = client.post(url(), {"name": f"p{i}", "plan": "pod-m"}, format="json")
            assert response.status_code == 201, response.content
            placed.append(response.json()["node"])
        # Most free memory first: big until it has no more free memory than small, then alternating.
        assert placed[:4] == [str(big.pk)] * 4
        assert set(placed[4:]) == {str(big.pk), str(small.pk)}

    def test_tenant_quota(self, tenant_a, settings):
        settings.CLOUDPOD_TENANT_MAX_PODS = 2
        node_in(tenant_a)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        for name in ("a", "b"):
            assert client.post(url(), {"name": name, "plan": "pod-xs"}, format="json").status_code == 201
        over = client.post(url(), {"name": "c", "plan": "pod-xs"}, format="json")
        assert over.status_code == 409 and over.json()["code"] == "quota_exceeded"
        settings.CLOUDPOD_TENANT_MAX_PODS = 100
        settings.CLOUDPOD_TENANT_MAX_MEMORY_MB = 300
        over = client.post(url(), {"name": "c", "plan": "pod-xs"}, format="json")
        assert over.status_code == 409 and "MB" in over.json()["detail"]

    def test_operator_quota_override_per_tenant(self, tenant_a, tenant_b, settings):
        from apps.cloudpods.models import TenantQuota

        settings.CLOUDPOD_TENANT_MAX_PODS = 1
        node_in(tenant_a)
        node_in(tenant_b)
        with tenant_a.scope():
            TenantQuota.objects.create(tenant=tenant_a.tenant, max_pods=3, note="bigger customer")
        a = client_for(tenant_a.owner, tenant_a.tenant)
        b = client_for(tenant_b.owner, tenant_b.tenant)
        quota = a.get(reverse("cloudpod-quota"))
        assert quota.status_code == 200
        assert quota.json() == {"max_pods": 3, "max_memory_mb": settings.CLOUDPOD_TENANT_MAX_MEMORY_MB,
                                "overridden": True, "used_pods": 0, "used_memory_mb": 0}  # fmt: skip
        for name in ("a", "b", "c"):
            assert a.post(url(), {"name": name, "plan": "pod-xs"}, format="json").status_code == 201
        assert a.post(url(), {"name": "d", "plan": "pod-xs"}, format="json").status_code == 409
        assert a.get(reverse("cloudpod-quota")).json()["used_pods"] == 3
        # The other tenant keeps the platform's default, and cannot see A's override.
        assert b.post(url(), {"name": "a", "plan": "pod-xs"}, format="json").status_code == 201
        assert b.post(url(), {"name": "b", "plan": "pod-xs"}, format="json").status_code == 409
        assert b.get(reverse("cloudpod-quota")).json()["overridden"] is False

    def test_the_quota_read_counts_what_the_orm_counts(self, tenant_a, tenant_b, settings):
        """The one prepared read of a create (usage, limits, the name) against the plain ORM's answer, as
        pods come and go, in both tenants, with and without an operator's override."""
        from apps.cloudpods.models import LIVE, TenantQuota

        def reference(fx, name):
            with fx.scope():
                live = CloudPod.objects.filter(status__in=LIVE)
                override = TenantQuota.objects.first()
                return {
                    "max_pods": override.max_pods if override and override.max_pods is not None
                    else settings.CLOUDPOD_TENANT_MAX_PODS,
                    "max_memory_mb": override.max_memory_mb if override and override.max_memory_mb is not None
                    else settings.CLOUDPOD_TENANT_MAX_MEMORY_MB,
                    "overridden": override is not None,
                    "used_pods": live.count(),
                    "used_memory_mb": sum(p.memory_mb for p in live),
                    "name_taken": live.filter(name=name).exists(),
                }  # fmt: skip

        def check():
            for fx in (tenant_a, tenant_b):
                for name in ("pod-1", "pod-2", "pod-3", "nobody"):
                    with fx.scope():
                        assert services._quota_usage(fx.tenant, name) == reference(fx, name)
                with fx.scope():
                    assert services.quota_usage(fx.tenant) == {
                        k: v for k, v in reference(fx, "").items() if k != "name_taken"
                    }

        check()  # no pods at all
        pod_in(tenant_a, 1)
        pod_in(tenant_a, 2, memory_mb=512)
        pod_in(tenant_b, 3)
        check()
        with tenant_a.scope():
            CloudPod.objects.filter(name="pod-1").update(status=PodStatus.DELETED)
            quota = TenantQuota.objects.create(tenant=tenant_a.tenant, max_memory_mb=4096)
        check()  # a deleted pod is not counted; an override of memory only keeps the default pod count
        with tenant_a.scope():
            TenantQuota.objects.filter(pk=quota.pk).update(max_pods=7, max_memory_mb=None)
        check()

    def test_resize_respects_the_memory_quota(self, tenant_a, settings):
        node_in(tenant_a)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        pod = pod_in(tenant_a, 1)  # pod-xs, running
        settings.CLOUDPOD_TENANT_MAX_MEMORY_MB = pod.memory_mb + 1
        over = client.post(reverse("cloudpod-resize", kwargs={"pk": pod.pk}), {"plan": "pod-m"}, format="json")
        assert over.status_code == 409 and over.json()["code"] == "quota_exceeded"
        with tenant_a.scope():
            assert CloudPod.objects.get(pk=pod.pk).plan == pod.plan

    def test_subscription_link_is_two_way_and_checked(self, tenant_a, tenant_b):
        node_in(tenant_a)
        node_in(tenant_b)
        sub = pod_subscription(tenant_a)
        ref = str(sub.pk)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        created = client.post(url(), {"name": "a", "plan": "pod-xs", "subscription": ref}, format="json")
        assert created.status_code == 201 and created.json()["subscription"] == ref
        sub.refresh_from_db()
        assert sub.external_ref == created.json()["id"]
        assert AuditEvent.objects.filter(action="cloudpod.subscription_link", object_id=created.json()["id"]).exists()
        taken = client.post(url(), {"name": "b", "plan": "pod-xs", "subscription": ref}, format="json")
        assert taken.status_code == 409
        unknown = "3f2b1c9e-0000-4000-8000-000000000001"
        assert client.post(url(), {"name": "c", "plan": "pod-xs", "subscription": unknown},
                           format="json").status_code == 400  # fmt: skip
        # Another tenant's subscription is not there for this tenant.
        other = client_for(tenant_b.owner, tenant_b.tenant)
        assert other.post(url(), {"name": "a", "plan": "pod-xs", "subscription": ref}, format="json").status_code == 400
        # Unlink: both sides forget each other, and the subscription is free again.
        with tenant_a.scope():
            pod = CloudPod.objects.get(name="a")
        assert client.patch(url(pod), {"subscription": None}, format="json").json()["subscription"] is None
        sub.refresh_from_db()
        assert sub.external_ref == ""
        assert (
            client.post(url(), {"name": "b", "plan": "pod-xs", "subscription": ref}, format="json").status_code == 201
        )
        assert client.get(url(), {"subscription": ref}).json()["count"] == 1


def pod_subscription(fx, pay=True):
    """An active subscription of a CloudPod plan product (config.plan = pod-xs)."""
    from decimal import Decimal

    from apps.billing.models import Invoice
    from apps.billing.services import payments, subscriptions
    from apps.catalog.services import product_create
    from tests.billing_support import customer_of

    with fx.scope():
        product = product_create(tenant=fx.tenant, data={
            "name": "Pod XS", "slug": f"pod-xs-{fx.tenant.slug}", "type": "cloudpod_plan", "config": {"plan": "pod-xs"},
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("5.00"), "setup_fee": Decimal(0)}],
        })  # fmt: skip
        sub = subscriptions.subscription_create(tenant=fx.tenant, customer=customer_of(fx), product=product,
                                                cycle="monthly", config={"name": "shop-pod"})  # fmt: skip
        if pay:
            invoice = Invoice.objects.filter(lines__subscription_charge__subscription=sub).first()
            payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="cash")
        sub.refresh_from_db()
    return sub


@pytest.mark.django_db
class TestSubscriptionDrivesThePod:
    def run_jobs(self, fx, job_type):
        from apps.jobs.models import Job
        from apps.jobs.services import run_job

        with fx.scope():
            ids = list(Job.objects.filter(type=job_type, status="PENDING").values_list("pk", flat=True))
        return [run_job(job_id) for job_id in ids]

    def test_activate_suspend_resume_cancel(self, tenant_a):
        from apps.billing.services import subscriptions
        from apps.jobs.models import Job

        node_in(tenant_a)
        sub = pod_subscription(tenant_a)
        assert sub.status == "active"
        assert self.run_jobs(tenant_a, "subscription.activate") == ["succeeded"]
        with tenant_a.scope():
            pod = CloudPod.objects.get(subscription=str(sub.pk))
            assert pod.name == "shop-pod" and pod.plan == "pod-xs"
            assert Job.objects.filter(type="cloudpod.provision", object_id=str(pod.pk)).exists()
        sub.refresh_from_db()
        assert sub.external_ref == str(pod.pk)
        assert self.run_jobs(tenant_a, "subscription.activate") == []  # nothing twice

        # Suspending while the pod still provisions: the job fails and retries later.
        with tenant_a.scope():
            subscriptions.subscription_suspend(sub=sub)
        assert self.run_jobs(tenant_a, "subscription.suspend") == ["pending"]
        CloudPod.all_tenants.filter(pk=pod.pk).update(status=PodStatus.RUNNING)  # provisioned meanwhile
        from django.utils import timezone

        Job.all_tenants.filter(type="subscription.suspend").update(run_after=timezone.now())  # its backoff is over
        assert self.run_jobs(tenant_a, "subscription.suspend") == ["succeeded"]
        assert fresh(pod).status == PodStatus.SUSPENDED
        with tenant_a.scope():
            subscriptions.subscription_resume(sub=sub)
        assert self.run_jobs(tenant_a, "subscription.resume") == ["succeeded"]
        assert fresh(pod).status == PodStatus.RUNNING
        with tenant_a.scope():
            subscriptions.subscription_cancel(sub=sub)
        assert self.run_jobs(tenant_a, "subscription.cancel") == ["succeeded"]
        assert fresh(pod).status == PodStatus.DELETING
        kinds = set(AuditEvent.objects.filter(object_id=str(pod.pk)).values_list("action", flat=True))
        assert {"cloudpod.create", "cloudpod.suspend", "cloudpod.resume", "cloudpod.delete"} <= kinds


@pytest.mark.django_db
class TestStateMachine:
    ACTIONS = {
        "suspend": {PodStatus.RUNNING},
        "resume": {PodStatus.SUSPENDED},
        "resize": {PodStatus.RUNNING},
        "destroy": set(PodStatus.values) - {PodStatus.DELETING, PodStatus.DELETED},
    }

    def call(self, client, pod, action):
        if action == "destroy":
            return client.delete(url(pod))
        data = {"plan": "pod-s"} if action == "resize" else None
        return client.post(url(pod, action), data, format="json")

    def test_every_action_from_every_status(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        node = node_in(tenant_a)
        seq = 0
        for action, allowed_from in self.ACTIONS.items():
            for status in PodStatus.values:
                seq += 1
                pod = pod_in(tenant_a, seq, node=node, status=status)
                jobs_before = Job.all_tenants.count()
                response = self.call(client, pod, action)
                if status in allowed_from:
                    assert response.status_code == 202, (action, status, response.content)
                    assert Job.all_tenants.count() == jobs_before + 1
                else:
                    assert response.status_code == 409, (action, status, response.content)
                    assert fresh(pod).status == status
                    assert Job.all_tenants.count() == jobs_before

    def test_transitions_and_jobs(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        pod = pod_in(tenant_a, 1)
        assert self.call(client, pod, "suspend").json()["status"] == "suspended"
        assert self.call(client, pod, "resume").json()["status"] == "running"
        assert self.call(client, pod, "resize").json()["status"] == "resizing"
        assert self.call(client, pod, "destroy").json()["status"] == "deleting"
        types = list(Job.all_tenants.order_by("created_at").values_list("type", flat=True))
        assert types == ["cloudpod.suspend", "cloudpod.resume", "cloudpod.resize", "cloudpod.delete"]
        actions = set(AuditEvent.objects.filter(object_id=str(pod.pk)).values_list("action", flat=True))
        assert {"cloudpod.suspend", "cloudpod.resume", "cloudpod.resize", "cloudpod.delete"} <= actions
        assert client.put(url(pod), {"name": "late"}, format="json").status_code == 409

    def test_resize_reserves_the_difference_within_the_node(self, tenant_a):
        node = node_in(tenant_a, memory_mb=700)
        pod = pod_in(tenant_a, 1, node=node)  # pod-xs: 128 MB
        client = client_for(tenant_a.owner, tenant_a.tenant)
        too_big = client.post(url(pod, "resize"), {"plan": "pod-l"}, format="json")
        assert too_big.status_code == 409 and too_big.json()["code"] == "no_capacity"
        assert client.post(url(pod, "resize"), {"plan": "pod-xs"}, format="json").status_code == 400
        assert client.post(url(pod, "resize"), {"plan": "nope"}, format="json").status_code == 400
        ok = client.post(url(pod, "resize"), {"plan": "pod-m"}, format="json")
        assert ok.status_code == 202 and ok.json()["memory_mb"] == 512
        node = fresh_node(node)
        assert (node.allocated_memory_mb, node.allocated_vcpu, node.allocated_disk_gb) == (512, Decimal("2"), 5)

    def test_action_role_matrix_and_other_tenants(self, tenant_a, tenant_b):
        node = node_in(tenant_a)
        seq = 100
        for action in ("suspend", "resize", "destroy", "resume"):
            for role in ORDERED:
                seq += 1
                status = PodStatus.SUSPENDED if action == "resume" else PodStatus.RUNNING
                pod = pod_in(tenant_a, seq, node=node, status=status)
                response = self.call(client_for(tenant_a.users[role], tenant_a.tenant), pod, action)
                expected = 202 if role.includes(Role.ADMIN) else 403
                assert response.status_code == expected, (action, role, response.status_code)
                other = self.call(client_for(tenant_b.users[role], tenant_b.tenant), pod, action)
                assert other.status_code == 404, (action, role, other.status_code)
        assert client_for(None, tenant_a.tenant).post(url(pod, "suspend")).status_code == 401

    def test_runtime_is_unknown_when_the_node_is_offline(self, tenant_a):
        node = node_in(tenant_a)
        Node.all_tenants.filter(pk=node.pk).update(status=NodeStatus.OFFLINE)
        pod = pod_in(tenant_a, 1)
        body = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant).get(url(pod)).json()
        assert body["status"] == "running"
        assert body["runtime"] == {
            "state": "unknown",
            "memory_limit_bytes": None,
            "memory_usage_bytes": None,
            "cpu_seconds": None,
            "pids": None,
        }

    def test_converge_of_a_deleted_or_error_pod(self, tenant_a):
        pod = pod_in(tenant_a, 1, status=PodStatus.DELETED)
        with tenant_a.scope():
            assert services.pod_converge(pod=fresh(pod), job_type="cloudpod.provision") == {"skipped": "deleted"}
            errored = pod_in(tenant_a, 2, status=PodStatus.ERROR)
            assert services.pods.job_targets["cloudpod.suspend"] == PodStatus.SUSPENDED
            assert services.pod_converge(pod=fresh(errored), job_type="unknown") == {"skipped": "error"}


def locks_taken(queries) -> list[tuple[str, str]]:
    """(table, lock) of every row-locking statement, in the order the database saw them."""
    out = []
    for query in queries:
        sql = query["sql"]
        for lock in ("FOR NO KEY UPDATE", "FOR UPDATE"):
            if lock in sql:
                out.append((re.search(r'\bFROM "(\w+)"', sql).group(1), lock))
                break
    return out


@pytest.mark.django_db
class TestLockOrder:
    """The order written in apps/cloudpods/locks.py: the pod, then its node(s) in primary-key order,
    then the tenant row for the quota."""

    def test_create_locks_the_nodes_then_the_tenant(self, tenant_a):
        node_in(tenant_a, "node-1")
        node_in(tenant_a, "node-2")
        with tenant_a.scope(), CaptureQueriesContext(connection) as captured:
            services.pod_create(tenant=tenant_a.tenant, name="web-1", plan="pod-xs")
        taken = locks_taken(captured.captured_queries)
        assert taken == [("nodes_node", "FOR UPDATE"), ("tenancy_tenant", "FOR NO KEY UPDATE")], taken
        nodes_sql = next(q["sql"] for q in captured.captured_queries if "FOR UPDATE" in q["sql"])
        assert 'ORDER BY "nodes_node"."id" ASC' in nodes_sql, nodes_sql

    def test_resize_locks_the_pod_then_its_node_then_the_tenant(self, tenant_a):
        pod = pod_in(tenant_a, 1)
        with tenant_a.scope(), CaptureQueriesContext(connection) as captured:
            services.pod_resize(pod=fresh(pod), plan="pod-s")
        taken = locks_taken(captured.captured_queries)
        assert taken == [
            ("cloudpods_cloudpod", "FOR UPDATE"),
            ("nodes_node", "FOR UPDATE"),
            ("tenancy_tenant", "FOR NO KEY UPDATE"),
        ], taken
