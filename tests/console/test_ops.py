"""The ops views: real aggregates in a fixed number of queries, tenant or platform-wide."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.cloudpods.models import PodStatus
from apps.jobs.models import Job, JobStatus
from apps.ops.api import OverviewViewSet, PlatformOverviewViewSet
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for, make_user, operator_client_for
from tests.pods_support import node_in, pod_in


def job(fx, status, **extra):
    with fx.scope():
        return Job.objects.create(tenant=fx.tenant, type="test.record", status=status, **extra)


class TestPlatformOverviewApi(ApiTestCase):
    viewset = PlatformOverviewViewSet
    basename = "platform-overview"
    roles = {"list": Role.ADMIN}

    def make(self, fx, seq):
        return pod_in(fx, seq)

    def test_list_query_count_is_constant(self, tenant_a):
        """Overridden: the answer is one object, not a page; its cost must not grow with the data."""
        client = client_for(tenant_a.owner, tenant_a.tenant)
        url = self.url(tenant_a, "list")
        client.get(url)
        with CaptureQueriesContext(connection) as small:
            assert client.get(url).status_code == 200
        for i in range(3):
            node_in(tenant_a, f"n{i}")
        for seq in range(40):
            self.new(tenant_a)
            job(tenant_a, [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.PENDING][seq % 3])
        with CaptureQueriesContext(connection) as big:
            response = client.get(url)
        assert response.status_code == 200
        assert len(big) == len(small), [q["sql"] for q in big.captured_queries]
        assert response.json()["pods"]["live"] >= 40


class TestOverviewApi(TestPlatformOverviewApi):
    viewset = OverviewViewSet
    basename = "ops-overview"

    def test_list_query_count_is_constant(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        url = self.url(tenant_a, "list")
        client.get(url)
        with CaptureQueriesContext(connection) as small:
            assert client.get(url).status_code == 200
        for _ in range(30):
            self.new(tenant_a)
        with CaptureQueriesContext(connection) as big:
            response = client.get(url)
        assert len(big) == len(small)
        assert response.json()["pods"] >= 30


@pytest.mark.django_db
class TestAggregates:
    def test_platform_overview_figures(self, tenant_a, tenant_b):
        node = node_in(tenant_a, "a1", vcpu=8, memory_mb=4096, disk_gb=100, max_pods=10)
        node_in(tenant_a, "a2", vcpu=4, memory_mb=2048, disk_gb=50, max_pods=5, status="draining")
        pod_in(tenant_a, 1, node=node)
        pod_in(tenant_a, 2, node=node, status=PodStatus.SUSPENDED, plan="pod-s", memory_mb=256)
        pod_in(tenant_a, 3, node=node, status=PodStatus.DELETED)
        node_b = node_in(tenant_b, "b1", vcpu=2, memory_mb=1024, disk_gb=10, max_pods=2)
        pod_in(tenant_b, 4, node=node_b)

        now = timezone.now()
        for status in (JobStatus.SUCCEEDED, JobStatus.SUCCEEDED, JobStatus.SUCCEEDED, JobStatus.FAILED):
            job(tenant_a, status)
        job(tenant_a, JobStatus.PENDING, run_after=now - timedelta(minutes=10))
        job(tenant_a, JobStatus.PENDING, run_after=now + timedelta(hours=1))  # not due: not waiting
        old = job(tenant_a, JobStatus.FAILED)
        Job.all_tenants.filter(pk=old.pk).update(created_at=now - timedelta(hours=30))  # outside the window

        body = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant).get("/api/v1/ops/platform-overview/").json()
        assert body["scope"] == "tenant" and body["tenant"] == str(tenant_a.tenant.pk)
        assert body["pods"]["by_status"]["running"] == 1
        assert body["pods"]["by_status"]["suspended"] == 1 and body["pods"]["by_status"]["deleted"] == 1
        assert body["pods"]["by_plan"] == {"pod-s": 1, "pod-xs": 1} and body["pods"]["live"] == 2
        assert body["nodes"]["count"] == 2 and body["nodes"]["by_status"]["draining"] == 1
        # pod_in reserves (it does not free for "deleted" rows): three pods on a1.
        assert body["nodes"]["capacity"]["memory_mb"] == {"total": 6144, "used": 128 + 256 + 128, "free": 5632}
        assert body["nodes"]["capacity"]["pods"] == {"total": 15, "used": 3, "free": 12}
        assert body["nodes"]["capacity"]["vcpu"]["total"] == 12.0
        jobs = body["jobs"]
        assert jobs["by_status"] == {"PENDING": 2, "RUNNING": 0, "SUCCEEDED": 3, "FAILED": 1, "CANCELLED": 0}
        assert jobs["failure_rate"] == 0.25
        assert 590 <= jobs["queue_age_seconds"] <= 700

        operator = make_user("op@mpanel.test", is_staff=True)
        platform = operator_client_for(operator).get("/api/v1/ops/platform-overview").json()
        assert platform["scope"] == "platform" and platform["tenant"] is None
        assert platform["pods"]["live"] == 3 and platform["nodes"]["count"] == 3
        assert platform["nodes"]["capacity"]["memory_mb"]["total"] == 6144 + 1024

        short = client_for(tenant_a.owner, tenant_a.tenant).get("/api/v1/ops/overview").json()
        assert short == {
            "customers": 0,
            "nodes": 2,
            "pods": 2,
            "pods_running": 1,
            "jobs_pending": 2,
            "jobs_failed_24h": 1,
        }
        assert operator_client_for(operator).get("/api/v1/ops/overview").json()["nodes"] == 3

    def test_empty(self, tenant_a):
        body = client_for(tenant_a.owner, tenant_a.tenant).get("/api/v1/ops/platform-overview").json()
        assert body["jobs"]["failure_rate"] == 0.0 and body["jobs"]["queue_age_seconds"] == 0.0
        assert body["nodes"]["capacity"]["vcpu"] == {"total": 0.0, "used": 0.0, "free": 0.0}
