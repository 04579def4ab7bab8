from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from agent.runtime import NodeRuntime, PodSpec
from apps.audit.models import AuditEvent
from apps.nodes import agent_secret, services
from apps.nodes.api import NodeViewSet
from apps.nodes.drivers import AgentDriver, LocalDriver, NodeError, driver_for
from apps.nodes.models import Node, NodeStatus
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for, make_user, operator_client_for, wait_for
from tests.pods_support import memory_cgroup_limit, node_in, node_root, pod_in  # noqa: F401

CAPACITY = {"vcpu": 4, "memory_mb": 2048, "disk_gb": 40, "max_pods": 10}


class TestNodeApi(ApiTestCase):
    viewset = NodeViewSet
    basename = "node"
    roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    def make(self, fx, seq):
        return node_in(fx, hostname=f"n{seq}.example.net")

    def create_payload(self, fx, seq):
        return {"hostname": f"new{seq}.example.net", "transport": "local", "roles": ["pods"], "capacity": CAPACITY}

    def update_payload(self, fx, obj, seq):
        return {"hostname": obj.hostname, "roles": ["pods", "web"], "capacity": {**CAPACITY, "max_pods": 20}}


@pytest.mark.django_db
class TestNodeRules:
    def test_agent_node_answers_its_secret_once_and_stores_a_hash(self, tenant_a):
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        payload = {
            "hostname": "Edge-1.Example.NET",
            "transport": "agent",
            "address": "http://127.0.0.1:8700",
            "roles": ["pods", "dns", "pods"],
            "capacity": CAPACITY,
        }
        response = client.post("/api/v1/ops/servers/", payload, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        secret = body["secret"]
        assert len(secret) == 64
        assert body["hostname"] == "edge-1.example.net"
        assert body["roles"] == ["pods", "dns"]
        assert body["capacity"] == {"vcpu": 4.0, "memory_mb": 2048, "disk_gb": 40, "max_pods": 10}
        assert body["free"]["memory_mb"] == 2048 and body["status"] == "active"
        with tenant_a.scope():
            node = Node.objects.get(pk=body["id"])
        assert node.secret_hash == Node.hash_secret(secret)
        assert secret not in str(Node.all_tenants.filter(pk=node.pk).values().get())
        assert agent_secret.derive(node) == secret  # the panel can sign without storing it
        again = client.get(f"/api/v1/ops/servers/{node.pk}/").json()
        assert "secret" not in again
        assert secret not in str(AuditEvent.objects.filter(object_id=str(node.pk)).values_list("changes", flat=True))
        # A local node has no secret to show.
        local = client.post("/api/v1/ops/servers", {**payload, "hostname": "l1", "transport": "local"}, format="json")
        assert local.status_code == 201 and local.json()["secret"] is None

    def test_validation(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        url = "/api/v1/ops/servers/"
        base = {"hostname": "h1", "roles": ["pods"], "capacity": CAPACITY}
        for bad in (
            {**base, "hostname": " "},
            {**base, "transport": "ssh"},
            {**base, "transport": "agent"},  # no address
            {**base, "roles": ["pods", "ftp"]},
            {**base, "capacity": {**CAPACITY, "memory_mb": -1}},
            {**base, "capacity": {"vcpu": 1}},
            {**base, "status": "offline"},
            {"hostname": "x"},
        ):
            response = client.post(url, bad, format="json")
            assert response.status_code == 400, (bad, response.content)
        assert client.post(url, base, format="json").status_code == 201
        assert client.post(url, base, format="json").status_code == 400  # same hostname

    def test_capacity_cannot_shrink_below_allocation_and_a_busy_node_cannot_go(self, tenant_a):
        node = node_in(tenant_a)
        pod_in(tenant_a, 1, node=node)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        url = f"/api/v1/ops/servers/{node.pk}/"
        shrink = client.patch(url, {"capacity": {**CAPACITY, "memory_mb": 64}}, format="json")
        assert shrink.status_code == 409, shrink.content
        assert client.delete(url).status_code == 409
        ok = client.patch(url, {"status": "draining"}, format="json")
        assert ok.status_code == 200 and ok.json()["status"] == "draining"
        assert client.patch(url, {"status": "offline"}, format="json").status_code == 400

    def test_operators_see_every_tenant_and_must_name_one_to_create(self, tenant_a, tenant_b):
        a = node_in(tenant_a, "a.example.net")
        b = node_in(tenant_b, "b.example.net")
        operator = make_user("ops@mpanel.test", is_staff=True)
        client = operator_client_for(operator)
        listed = {n["id"] for n in client.get("/api/v1/ops/servers/").json()["results"]}
        assert listed == {str(a.pk), str(b.pk)}
        response = client.post(
            "/api/v1/ops/servers/", {"hostname": "x", "roles": [], "capacity": CAPACITY}, format="json"
        )
        assert response.status_code == 403 and "X-Tenant-ID" in response.json()["detail"]
        # A tenant's admin sees only their own.
        own = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant).get("/api/v1/ops/servers/").json()
        assert [n["id"] for n in own["results"]] == [str(a.pk)]

    def test_filters(self, tenant_a):
        node_in(tenant_a, "p.example.net", roles=["pods"])
        node_in(tenant_a, "w.example.net", roles=["web"])
        client = client_for(tenant_a.owner, tenant_a.tenant)
        assert client.get("/api/v1/ops/servers/", {"status": "active"}).json()["count"] == 2
        assert client.get("/api/v1/ops/servers/", {"search": "w.ex"}).json()["count"] == 1


@pytest.mark.django_db
class TestHeartbeats:
    def test_a_local_heartbeat_records_the_node_and_brings_it_back_online(self, tenant_a, node_root):  # noqa: F811
        node = node_in(tenant_a)
        Node.all_tenants.filter(pk=node.pk).update(status=NodeStatus.OFFLINE, status_before_offline="draining")
        assert services.heartbeat_all()["ok"] == 1
        node.refresh_from_db()
        assert node.status == NodeStatus.DRAINING
        assert node.last_heartbeat_at is not None
        assert node.reported["runc"].startswith("runc version")
        assert "busybox" in node.reported["images"]
        assert node.reported["pods"] == []
        assert AuditEvent.objects.filter(action="node.online", object_id=str(node.pk)).exists()

    def test_silent_nodes_go_offline_and_unreachable_ones_record_the_error(self, tenant_a, settings):
        settings.MPANEL_NODE_OFFLINE_AFTER = 60
        fresh = node_in(tenant_a, "fresh")
        silent = node_in(tenant_a, "silent")
        never = node_in(tenant_a, "never")
        now = timezone.now()
        Node.all_tenants.filter(pk=fresh.pk).update(last_heartbeat_at=now - timedelta(seconds=10))
        Node.all_tenants.filter(pk=silent.pk).update(last_heartbeat_at=now - timedelta(seconds=120))
        Node.all_tenants.filter(pk=never.pk).update(created_at=now - timedelta(seconds=120))
        assert services.nodes_mark_offline() == 2
        statuses = dict(Node.all_tenants.values_list("hostname", "status"))
        assert statuses == {"fresh": "active", "silent": "offline", "never": "offline"}
        assert services.is_reachable(Node.all_tenants.get(pk=fresh.pk))
        assert not services.is_reachable(Node.all_tenants.get(pk=silent.pk))

        with tenant_a.scope():
            agent = Node.objects.create(
                hostname="agent-down",
                transport="agent",
                address="http://127.0.0.1:1",
                vcpu=1,
                memory_mb=1,
                disk_gb=1,
                max_pods=1,
                secret_salt="s",
            )
        assert services.node_heartbeat(node=agent) is False
        agent.refresh_from_db()
        assert "unreachable" in agent.last_error

    def test_drivers(self, tenant_a):
        node = node_in(tenant_a)
        assert isinstance(driver_for(node), LocalDriver)
        node.transport, node.address, node.secret_salt = "agent", "http://127.0.0.1:9", "salt"
        driver = driver_for(node)
        assert isinstance(driver, AgentDriver) and driver.base == "http://127.0.0.1:9"
        with pytest.raises(NodeError) as err:
            driver.pod_state("mp-x")
        assert not err.value.permanent
        # A bare host:port means https, which needs the pin of the agent's certificate.
        node.address = "127.0.0.1:9"
        with pytest.raises(NodeError, match="no pinned certificate") as err:
            driver_for(node)
        assert err.value.permanent
        node.tls_fingerprint = "ab" * 32
        assert driver_for(node).base == "https://127.0.0.1:9"
        node.address = ""
        with pytest.raises(NodeError):
            driver_for(node)

    def test_heartbeat_task_is_scheduled(self, settings):
        assert settings.CELERY_BEAT_SCHEDULE["nodes-heartbeat"]["task"] == "nodes.heartbeat"
        from apps.nodes import tasks

        with mock.patch.object(services, "heartbeat_all", return_value={"ok": 0}) as fn:
            assert tasks.heartbeat() == {"ok": 0}
        fn.assert_called_once()


def test_capacity_decimal_roundtrip():
    node = Node(vcpu=Decimal("2"), allocated_vcpu=Decimal("0.5"), memory_mb=10, disk_gb=1, max_pods=1)
    assert node.fits(vcpu=Decimal("1.5"), memory_mb=10, disk_gb=1)
    assert not node.fits(vcpu=2, memory_mb=10, disk_gb=1)


def test_reverse_names():
    assert reverse("node-list") == "/api/v1/ops/servers"
    assert reverse("hosting-server-list") == "/api/v1/hosting/servers"


@pytest.mark.django_db
def test_agent_address_must_be_a_url_of_host_and_port(tenant_a):
    client = client_for(tenant_a.owner, tenant_a.tenant)
    base = {"hostname": "h", "transport": "agent", "roles": ["pods"], "capacity": CAPACITY}
    pin = {"tls_fingerprint": "sha256:" + "ab" * 32}
    for bad in ("file:///etc/passwd", "gopher://x:70", "http://host", "http://h:80/admin?x=1", "a b:1",
                "http://10.0.0.5:8700"):  # fmt: skip
        response = client.post("/api/v1/ops/servers/", {**base, **pin, "address": bad}, format="json")
        assert response.status_code == 400 and "address" in response.json(), bad
    for i, good in enumerate(("http://127.0.0.1:8700", "https://node.example.net:443", "10.0.0.5:8700")):
        data = {**base, **pin, "hostname": f"h{i}", "address": good}
        response = client.post("/api/v1/ops/servers/", data, format="json")
        assert response.status_code == 201, (good, response.content)


@pytest.mark.django_db
def test_an_agent_node_without_a_secret_is_a_permanent_driver_error(tenant_a):
    node = node_in(tenant_a, transport="agent", address="http://127.0.0.1:9")
    with pytest.raises(NodeError) as err:
        driver_for(node)
    assert err.value.permanent
    assert services.node_heartbeat(node=node) is False


def test_a_restarted_container_gets_the_current_limits(node_root):  # noqa: F811
    runtime = NodeRuntime(node_root)
    runtime.pod_create(PodSpec(id="restart-1", memory_mb=64))
    runtime._runc("kill", "restart-1", "KILL")
    wait_for(lambda: runtime.pod_state("restart-1")["state"] == "stopped", message="the container to stop")
    assert runtime.pod_create(PodSpec(id="restart-1", memory_mb=96))["created"] is True
    assert memory_cgroup_limit(runtime.pod_state("restart-1")["pid"]) == 96 * 1024 * 1024
    assert [c["id"] for c in runtime.pod_list()] == ["restart-1"]


@pytest.mark.django_db
def test_a_node_that_still_serves_something_is_not_deleted(tenant_a, monkeypatch):
    """A website (or zone, mail domain, database server) on the node protects it: 409, nothing lost."""
    from apps.jobs import services as job_services
    from tests.web_support import website_in

    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    node = node_in(tenant_a, "busy.example.net", roles=["web"])
    site = website_in(tenant_a, 1, node=node)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = admin.delete(reverse("node-detail", kwargs={"pk": node.pk}))
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "in_use" and "websites" in response.json()["detail"]
    assert Node.all_tenants.filter(pk=node.pk).exists()
    assert not AuditEvent.objects.filter(action="node.delete", object_id=str(node.pk)).exists()
    assert site.node_id == node.pk
