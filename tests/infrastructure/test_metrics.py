"""Servers and metrics: /hosting/servers, the signed batch ingest, rollups, retention, the query API
and the reporters (the local one reading /proc, the agent's posting over real HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agent import signing
from agent.metrics import NODE_METRICS, Collector, check_services
from agent.runtime import PodSpec
from apps.metrics import selectors, services
from apps.metrics.api import HostingServerViewSet, ServerMetricsViewSet
from apps.metrics.models import HourRollup, IngestNonce, MinuteRollup, NodeReport, Sample
from apps.nodes import agent_secret
from apps.nodes import services as node_services
from apps.nodes.drivers import LocalDriver
from apps.nodes.models import Node, NodeStatus
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for, wait_for
from tests.pods_support import node_in, node_root, pod_in  # noqa: F401

INGEST = "/api/v1/hosting/server-metrics/ingest"
ROOT = Path(__file__).resolve().parents[2]


def secret_node(fx, hostname="m1", roles=("web",), **extra) -> Node:
    """A node with an agent secret, as node_create makes it (local transport: no agent needed)."""
    with fx.scope():
        node, _ = node_services.node_create(
            tenant=fx.tenant,
            data={"hostname": hostname, "roles": list(roles), "capacity": {"vcpu": 2, "memory_mb": 1024,
                  "disk_gb": 10, "max_pods": 5}, **extra},
        )  # fmt: skip
    return node


def post_batch(node, payload, *, secret=None, ts=None, headers=None, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(payload).encode()
    secret = secret or agent_secret.derive(node)
    signed = headers or {"X-Mpanel-Node": str(node.pk), **signing.sign(secret, "POST", INGEST, body, now=ts)}
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signed.items()}
    return client_for().generic("POST", INGEST, body, content_type="application/json", **extra), signed


def recent(offset: int = 0) -> int:
    return int(time.time()) - 600 + offset


# --- /hosting/servers ---------------------------------------------------------------------------------


class TestHostingServersApi(ApiTestCase):
    viewset = HostingServerViewSet
    basename = "hosting-server"
    roles = {"list": Role.VIEWER, "retrieve": Role.VIEWER}

    def make(self, fx, seq):
        return node_in(fx, hostname=f"web{seq}.example.net", roles=["web", "dns"])


@pytest.mark.django_db
class TestHostingServers:
    def test_only_hosting_roles_and_no_node_management_here(self, tenant_a):
        web = node_in(tenant_a, "web.example.net", roles=["web"])
        node_in(tenant_a, "pods.example.net", roles=["pods"])
        mail = node_in(tenant_a, "mx.example.net", roles=["mail", "pods"])
        client = client_for(tenant_a.users[Role.VIEWER], tenant_a.tenant)
        body = client.get("/api/v1/hosting/servers/").json()
        assert [n["hostname"] for n in body["results"]] == ["mx.example.net", "web.example.net"]
        assert {n["id"] for n in body["results"]} == {str(web.pk), str(mail.pk)}
        assert "address" not in body["results"][0] and "secret" not in body["results"][0]
        assert client_for(tenant_a.owner, tenant_a.tenant).post("/api/v1/hosting/servers/", {}).status_code in (
            403,
            405,
        )
        filtered = client.get("/api/v1/hosting/servers/?role=mail").json()["results"]
        assert [n["hostname"] for n in filtered] == ["mx.example.net"]
        # /ops/servers is unchanged: every node, ADMIN+.
        assert client.get("/api/v1/ops/servers/").status_code == 403
        ops = client_for(tenant_a.owner, tenant_a.tenant).get("/api/v1/ops/servers/").json()
        assert ops["count"] == 3

    def test_services_and_health(self, tenant_a):
        node = secret_node(tenant_a, "mx.example.net", roles=["mail", "web"])
        client = client_for(tenant_a.users[Role.VIEWER], tenant_a.tenant)
        url = f"/api/v1/hosting/servers/{node.pk}/"
        unknown = client.get(url).json()
        assert unknown["health"] == "unknown" and unknown["last_report_at"] is None
        assert {(s["name"], s["state"]) for s in unknown["services"]} == {
            ("postfix", "unknown"), ("dovecot", "unknown"), ("nginx", "unknown")}  # fmt: skip

        up = {"state": "up", "detail": ""}
        Node.all_tenants.filter(pk=node.pk).update(
            last_heartbeat_at=timezone.now(),
            reported={"services": {"nginx": up, "postfix": up, "dovecot": up}},
        )
        healthy = client.get(url).json()
        assert healthy["health"] == "healthy", healthy
        assert {s["state"] for s in healthy["services"]} == {"up"}

        Node.all_tenants.filter(pk=node.pk).update(
            reported={"services": {"nginx": up, "postfix": up, "dovecot": {"state": "down", "detail": "no pid"}}}
        )
        degraded = client.get(url).json()
        assert degraded["health"] == "degraded"
        assert {s["name"]: s["state"] for s in degraded["services"]}["dovecot"] == "down"

        # A pushed report newer than the heartbeat wins, with its own services.
        response, _ = post_batch(node, {"samples": [["cpu.percent", recent(), 5.0]],
                                        "services": {"nginx": up, "postfix": up, "dovecot": up}})  # fmt: skip
        assert response.status_code == 200, response.content
        pushed = client.get(url).json()
        assert pushed["health"] == "healthy" and pushed["usage"] == {"cpu.percent": 5.0}

        old = timezone.now() - timedelta(hours=1)
        Node.all_tenants.filter(pk=node.pk).update(last_heartbeat_at=old)
        NodeReport.objects.filter(node=node).update(reported_at=old)
        assert client.get(url).json()["health"] == "down"
        Node.all_tenants.filter(pk=node.pk).update(last_heartbeat_at=timezone.now(), status=NodeStatus.OFFLINE)
        assert client.get(url).json()["health"] == "down"

    def test_a_db_node_needs_one_of_its_databases(self, tenant_a):
        node = node_in(tenant_a, "db.example.net", roles=["db"])
        Node.all_tenants.filter(pk=node.pk).update(last_heartbeat_at=timezone.now(), reported={"services": {
            "postgresql": {"state": "up"}, "mariadb": {"state": "unconfigured"}}})  # fmt: skip
        body = client_for(tenant_a.owner, tenant_a.tenant).get(f"/api/v1/hosting/servers/{node.pk}/").json()
        assert body["health"] == "healthy"

    def test_local_heartbeat_reports_real_service_states(self, tenant_a, tmp_path, settings, monkeypatch):
        """The heartbeat asks the node: runc answers its version; nginx is up when the pid in its
        configuration's pid file lives, down when that process is gone."""
        settings.MPANEL_NODE_ROOT = tmp_path / "node"
        run = tmp_path / "run"
        run.mkdir()
        conf = tmp_path / "nginx.conf"
        conf.write_text(f"pid {run}/nginx.pid;\nevents {{}}\n")
        monkeypatch.setenv("MPANEL_NGINX_CONF", str(conf))
        sleeper = subprocess.Popen(["sleep", "60"])
        try:
            (run / "nginx.pid").write_text(f"{sleeper.pid}\n")
            node = node_in(tenant_a, "web.example.net", roles=["web", "pods"])
            assert node_services.node_heartbeat(node=node)
            body = client_for(tenant_a.owner, tenant_a.tenant).get(f"/api/v1/hosting/servers/{node.pk}/").json()
            states = {s["name"]: s["state"] for s in body["services"]}
            assert states == {"nginx": "up", "runc": "up"}, body
            assert body["health"] == "healthy"
        finally:
            sleeper.kill()
            sleeper.wait()
        assert check_services(tmp_path / "node")["nginx"]["state"] == "down"

    def test_query_count_is_constant(self, tenant_a, django_assert_max_num_queries):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        for i in range(3):
            post_batch(secret_node(tenant_a, f"w{i}"), {"samples": [["cpu.percent", recent(), 1.0]]})
        client.get("/api/v1/hosting/servers/")
        with CaptureQueriesContext(connection) as few:
            assert client.get("/api/v1/hosting/servers/").status_code == 200
        ceiling = len(few)  # now: the next request's start clears the connection's query log
        for i in range(3, 20):
            post_batch(secret_node(tenant_a, f"w{i}"), {"samples": [["cpu.percent", recent(), 1.0]]})
        with django_assert_max_num_queries(ceiling):
            assert client.get("/api/v1/hosting/servers/").json()["count"] == 20


# --- ingest ------------------------------------------------------------------------------------------


@pytest.mark.django_db
class TestIngest:
    def test_a_signed_batch_is_stored_once(self, tenant_a):
        node = secret_node(tenant_a)
        base = recent()  # one clock reading: the last assertion names the same second as the samples
        samples = [["cpu.percent", base + i, float(i)] for i in range(100)] + [["load.1", base, 0.5]]
        response, _ = post_batch(node, {"samples": samples})
        assert response.status_code == 200, response.content
        assert response.json() == {"received": 101, "stored": 101, "duplicates": 0}
        assert Sample.objects.filter(node=node).count() == 101
        again, _ = post_batch(node, {"samples": samples})  # a retry: new signature, same samples
        assert again.json() == {"received": 101, "stored": 0, "duplicates": 101}
        assert Sample.objects.filter(node=node).count() == 101
        report = NodeReport.objects.get(node=node)
        assert report.latest["cpu.percent"] == [base + 99, 99.0]

    def test_bad_credentials_are_401_and_store_nothing(self, tenant_a, tenant_b):
        node = secret_node(tenant_a)
        other = secret_node(tenant_b, "other")
        payload = {"samples": [["cpu.percent", recent(), 1.0]]}
        body = json.dumps(payload).encode()
        good = {"X-Mpanel-Node": str(node.pk), **signing.sign(agent_secret.derive(node), "POST", INGEST, body)}
        cases = {
            "unsigned": {"X-Mpanel-Node": str(node.pk)},
            "no node": {k: v for k, v in good.items() if k != "X-Mpanel-Node"},
            "bad node id": {**good, "X-Mpanel-Node": "not-a-uuid"},
            "unknown node": {**good, "X-Mpanel-Node": "00000000-0000-0000-0000-000000000000"},
            "bad signature": {**good, "X-Mpanel-Signature": "0" * 64},
            "another node's secret": {"X-Mpanel-Node": str(node.pk),
                                      **signing.sign(agent_secret.derive(other), "POST", INGEST, body)},
            "expired": {"X-Mpanel-Node": str(node.pk), **signing.sign(agent_secret.derive(node), "POST", INGEST,
                                                                       body, now=time.time() - 400)},
            "another path": {"X-Mpanel-Node": str(node.pk),
                             **signing.sign(agent_secret.derive(node), "POST", "/elsewhere", body)},
        }  # fmt: skip
        for name, headers in cases.items():
            response, _ = post_batch(node, payload, headers=headers)
            assert response.status_code == 401, (name, response.status_code, response.content)
        assert Sample.objects.count() == 0 and IngestNonce.objects.count() == 0
        # The body is part of the signature: a changed body is refused.
        tampered, _ = post_batch(node, None, headers=good, raw=json.dumps({"samples": [["cpu.percent", recent(),
                                                                                         99.0]]}).encode())  # fmt: skip
        assert tampered.status_code == 401
        first, _ = post_batch(node, payload, headers=good)
        assert first.status_code == 200
        replay, _ = post_batch(node, payload, headers=good)
        assert replay.status_code == 401 and "replayed" in replay.json()["detail"]
        assert Sample.objects.count() == 1

    def test_a_rotated_secret_stops_the_old_one_after_the_grace(self, tenant_a):
        """The old secret is taken during the rotation's grace (the agent may not have the new one yet),
        refused after it; a rotation without grace refuses it at once."""
        node = secret_node(tenant_a)
        old = agent_secret.derive(node)
        with tenant_a.scope():
            new = node_services.node_rotate_secret(node=node)
        node.refresh_from_db()
        for i, secret in enumerate((old, new)):
            response, _ = post_batch(node, {"samples": [["cpu.percent", recent(i), 1.0]]}, secret=secret)
            assert response.status_code == 200, response.content
        Node.all_tenants.filter(pk=node.pk).update(secret_previous_until=timezone.now() - timedelta(seconds=1))
        node.refresh_from_db()
        response, _ = post_batch(node, {"samples": [["cpu.percent", recent(2), 1.0]]}, secret=old)
        assert response.status_code == 401
        response, _ = post_batch(node, {"samples": [["cpu.percent", recent(3), 1.0]]})
        assert response.status_code == 200
        with tenant_a.scope():
            newest = node_services.node_rotate_secret(node=node, grace=0)
        node.refresh_from_db()
        response, _ = post_batch(node, {"samples": [["cpu.percent", recent(4), 1.0]]}, secret=new)
        assert response.status_code == 401
        response, _ = post_batch(node, {"samples": [["cpu.percent", recent(5), 1.0]]}, secret=newest)
        assert response.status_code == 200

    def test_validation_is_400_and_nothing_half_written(self, tenant_a, settings):
        settings.MPANEL_METRICS_MAX_BATCH = 50
        node = secret_node(tenant_a)
        ok = ["cpu.percent", recent(), 1.0]
        bad_batches = [
            {},
            {"samples": []},
            {"samples": "x"},
            {"samples": [ok] * 51},
            {"samples": [ok, ["cpu.bogus", recent(), 1.0]]},
            {"samples": [ok, ["cpu.percent", recent(), "1"]]},
            {"samples": [ok, ["cpu.percent", recent(), True]]},
            {"samples": [ok, ["cpu.percent", "yesterday", 1.0]]},
            {"samples": [ok, ["cpu.percent", time.time() - 7 * 3600, 1.0]]},
            {"samples": [ok, ["cpu.percent", time.time() + 3600, 1.0]]},
            {"samples": [ok, ["cpu.percent", recent()]]},
            {"samples": [ok, {"metric": "cpu.percent"}]},
            {"samples": [ok, ["pod.../x.pids", recent(), 1]]},
            {"samples": [ok], "services": {"nginx": {"state": "great"}}},
            {"samples": [ok], "services": ["nginx"]},
            [ok],
        ]
        for payload in bad_batches:
            response, _ = post_batch(node, payload)
            assert response.status_code == 400, (payload, response.status_code, response.content)
        for raw in (
            b"not json",
            b'{"samples": [["cpu.percent", 1, NaN]]}',
            b'{"samples": [["cpu.percent", 1, 1e999]]}',
        ):
            response, _ = post_batch(node, None, raw=raw)
            assert response.status_code == 400, raw
        assert Sample.objects.count() == 0 and IngestNonce.objects.count() == 0
        assert not NodeReport.objects.filter(node=node).exists()
        errors = post_batch(node, {"samples": [ok, ["cpu.bogus", recent(), 1.0]]})[0].json()
        assert errors["samples"] == ["sample 1: Unknown metric 'cpu.bogus'."]

    def test_pod_metrics_are_accepted(self, tenant_a):
        node = secret_node(tenant_a)
        response, _ = post_batch(node, {"samples": [["pod.mp-abc123.memory_bytes", recent(), 1048576],
                                                    ["pod.mp-abc123.cpu_percent", recent(), 12.5]]})  # fmt: skip
        assert response.status_code == 200, response.content
        assert Sample.objects.filter(node=node, metric__startswith="pod.mp-abc123.").count() == 2

    def test_query_count_does_not_grow_with_the_batch(self, tenant_a, django_assert_max_num_queries):
        node = secret_node(tenant_a)
        post_batch(node, {"samples": [["cpu.percent", recent(), 0.0]]})  # the report row exists from now on
        with CaptureQueriesContext(connection) as small:
            response, _ = post_batch(node, {"samples": [["cpu.percent", recent(1), 1.0]]})
        assert response.status_code == 200
        ceiling = len(small)
        big = [[metric, recent(10 + i), float(i)] for i in range(400) for metric in NODE_METRICS]
        with django_assert_max_num_queries(ceiling):
            response, _ = post_batch(node, {"samples": big})
        assert response.json()["stored"] == len(big) == 4800


# --- rollups and retention ---------------------------------------------------------------------------


@pytest.mark.django_db
class TestRollups:
    def test_minute_and_hour_rollups_on_known_data(self, tenant_a, settings):
        settings.MPANEL_METRICS_ROLLUP_MARGIN = 0
        node = secret_node(tenant_a)
        hour = (int(time.time()) // 3600) * 3600 - 3600  # the previous hour, whole
        # Minute 0: values 0..59 (one a second); minute 1: 10 samples of 100; minute 2: one sample of -5.
        samples = [["cpu.percent", hour + i, float(i)] for i in range(60)]
        samples += [["cpu.percent", hour + 60 + i * 6, 100.0] for i in range(10)]
        samples += [["cpu.percent", hour + 120, -5.0]]
        assert post_batch(node, {"samples": samples})[0].status_code == 200
        time.sleep(1.05)  # the rollup reads what was received up to the second before
        later = time.time()
        result = services.rollup(now=later)
        assert result["minutes"] == 3 and result["hours"] == 1
        minutes = list(MinuteRollup.objects.filter(node=node).order_by("ts").values_list(
            "ts", "value_avg", "value_min", "value_max", "samples"))  # fmt: skip
        assert minutes == [(hour, 29.5, 0.0, 59.0, 60), (hour + 60, 100.0, 100.0, 100.0, 10),
                           (hour + 120, -5.0, -5.0, -5.0, 1)]  # fmt: skip
        hourly = HourRollup.objects.get(node=node)
        assert (hourly.ts, hourly.value_min, hourly.value_max, hourly.samples) == (hour, -5.0, 100.0, 71)
        assert hourly.value_avg == pytest.approx((sum(range(60)) + 1000 - 5) / 71)
        assert services.rollup(now=later)["minutes"] == 0  # nothing new received: nothing recomputed

        # A late sample in minute 1 recomputes minute 1 and the hour, nothing else.
        time.sleep(1.05)  # received after the second the last run read up to
        assert post_batch(node, {"samples": [["cpu.percent", hour + 61, 0.0]]})[0].status_code == 200
        time.sleep(1.05)
        assert services.rollup()["minutes"] == 1
        minute1 = MinuteRollup.objects.get(node=node, ts=hour + 60)
        assert (minute1.value_avg, minute1.value_min, minute1.samples) == (pytest.approx(1000 / 11), 0.0, 11)
        assert HourRollup.objects.get(node=node).samples == 72

    def test_retention(self, tenant_a, settings):
        settings.MPANEL_METRICS_RAW_HOURS = 2
        settings.MPANEL_METRICS_MINUTE_DAYS = 1
        settings.MPANEL_METRICS_HOUR_DAYS = 30
        node = secret_node(tenant_a)
        now = int(time.time())
        Sample.objects.bulk_create([Sample(node=node, metric="load.5", ts=now - h * 3600, value=h,
                                           received_at=now - 3 * 86400) for h in range(5)])  # fmt: skip
        for model in (MinuteRollup, HourRollup):
            model.objects.bulk_create([model(node=node, metric="load.1", ts=now - d * 86400, value_avg=1,
                                             value_min=1, value_max=1, samples=1) for d in (0, 2, 40)])  # fmt: skip
        IngestNonce.objects.create(node=node, nonce="old", seen_at=now - 3600)
        IngestNonce.objects.create(node=node, nonce="new", seen_at=now)
        result = services.purge(now=now)
        assert result == {"samples": 2, "minutes": 2, "hours": 1, "nonces": 1}
        assert sorted(Sample.objects.values_list("value", flat=True)) == [0, 1, 2]
        assert MinuteRollup.objects.filter(metric="load.1").count() == 1
        assert HourRollup.objects.filter(metric="load.1").count() == 2
        # The raw samples were rolled up before any was purged: their minutes outlive them.
        assert MinuteRollup.objects.filter(metric="load.5").count() == 5
        assert list(IngestNonce.objects.values_list("nonce", flat=True)) == ["new"]


# --- the query API -----------------------------------------------------------------------------------


class TestServerMetricsApi(ApiTestCase):
    viewset = ServerMetricsViewSet
    basename = "server-metrics"
    roles = {"list": Role.VIEWER, "retrieve": Role.VIEWER}

    def make(self, fx, seq):
        node = node_in(fx, hostname=f"m{seq}.example.net", roles=["pods"])
        Sample.objects.create(node=node, metric="cpu.percent", ts=recent(), value=1.0, received_at=recent())
        return node


@pytest.mark.django_db
class TestSeriesQuery:
    @pytest.fixture
    def loaded(self, tenant_a):
        node = secret_node(tenant_a, "q1")
        hour = (int(time.time()) // 3600) * 3600 - 3600
        samples = [[metric, hour + i * 10, float(i)] for i in range(360) for metric in ("cpu.percent", "load.1")]
        assert post_batch(node, {"samples": samples})[0].status_code == 200
        services.rollup(now=time.time() + 120)
        return node, hour

    def get(self, fx, node, role=Role.VIEWER, **params):
        client = client_for(fx.users[role], fx.tenant)
        return client.get(f"/api/v1/hosting/server-metrics/{node.pk}/", params)

    def test_steps(self, tenant_a, loaded):
        node, hour = loaded
        span = {"from": hour, "to": hour + 3600, "metric": "cpu.percent"}
        raw = self.get(tenant_a, node, step="raw", **span).json()
        assert raw["source"] == "raw" and raw["step"] == "raw"
        points = raw["series"][0]["points"]
        assert len(points) == 360 and points[1] == [hour + 10, 1.0, 1.0, 1.0]

        minute = self.get(tenant_a, node, step="1m", **span).json()
        assert minute["source"] == "1m" and minute["step"] == 60
        assert minute["series"][0]["points"][0] == [hour, 2.5, 0.0, 5.0]  # samples 0..5 of the first minute
        assert len(minute["series"][0]["points"]) == 60

        five = self.get(tenant_a, node, step="300", **span).json()  # 5 minutes from the 1-minute table
        assert five["source"] == "1m" and len(five["series"][0]["points"]) == 12
        assert five["series"][0]["points"][0] == [hour, 14.5, 0.0, 29.0]

        hourly = self.get(tenant_a, node, step="1h", **span).json()
        assert hourly["source"] == "1h" and hourly["series"][0]["points"] == [[hour, 179.5, 0.0, 359.0]]

        thirty = self.get(tenant_a, node, step="30", **span).json()  # raw, bucketed
        assert thirty["source"] == "raw" and thirty["series"][0]["points"][0] == [hour, 1.0, 0.0, 2.0]

        both = self.get(tenant_a, node, step="1h", **{**span, "metric": "cpu.percent,load.1"}).json()
        assert [s["metric"] for s in both["series"]] == ["cpu.percent", "load.1"]
        iso = self.get(tenant_a, node, step="1h", metric="load.1",
                       **{"from": datetime.fromtimestamp(hour, tz=UTC).isoformat(),
                          "to": str(hour + 3600)}).json()  # fmt: skip
        assert iso["series"][0]["points"][0][0] == hour
        default = self.get(tenant_a, node).json()
        assert default["source"] == "1m" and len(default["series"]) == len(selectors.DEFAULT_METRICS)

    def test_bounds_and_bad_parameters(self, tenant_a, loaded, settings):
        node, hour = loaded
        settings.MPANEL_METRICS_MAX_POINTS = 100
        span = {"from": hour, "to": hour + 3600, "metric": "cpu.percent"}
        for params in (
            {**span, "step": "1m"},  # 60 points... fine alone
        ):
            assert self.get(tenant_a, node, **params).status_code == 200
        for params in (
            {**span, "step": "raw"},  # 360 raw samples > 100
            {**span, "step": "10"},  # 360 buckets > 100
            {**span, "step": "1m", "metric": "cpu.percent,load.1"},  # 120 > 100
            {**span, "step": "0"},
            {**span, "step": "90"},
            {**span, "step": "5400"},
            {**span, "step": "fast"},
            {**span, "metric": "cpu.bogus"},
            {**span, "metric": ",".join(["cpu.percent"] * 1 + [f"pod.p{i}.pids" for i in range(25)])},
            {"from": hour + 10, "to": hour},
            {"from": "yesterday"},
            {"from": "nan"},
            {"from": 0, "to": hour},
            {"to": "1e30"},
            {"from": "-5", "to": "10"},
        ):
            response = self.get(tenant_a, node, **params)
            assert response.status_code == 400, (params, response.status_code, response.content)

    def test_tenant_isolation(self, tenant_a, tenant_b, loaded):
        node, _hour = loaded
        for role in Role:
            assert self.get(tenant_b, node, role=role).status_code == 404
        assert self.get(tenant_a, node, role=Role.VIEWER).status_code == 200

    def test_query_count_does_not_grow_with_metrics(self, tenant_a, loaded, django_assert_max_num_queries):
        node, hour = loaded
        with CaptureQueriesContext(connection) as one:
            self.get(tenant_a, node, metric="cpu.percent", step="1m", **{"from": hour, "to": hour + 3600})
        with django_assert_max_num_queries(len(one)):
            response = self.get(tenant_a, node, metric="cpu.percent,load.1,mem.percent", step="raw",
                                **{"from": hour, "to": hour + 3600})  # fmt: skip
        assert response.status_code == 200


# --- reporters ---------------------------------------------------------------------------------------


def _meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


@pytest.mark.django_db
def test_local_reporter_reads_proc(tenant_a, tenant_b, tmp_path, settings):
    settings.MPANEL_NODE_ROOT = tmp_path / "node"
    services._collector = None
    a = node_in(tenant_a, "local-a", roles=["web"])
    b = node_in(tenant_b, "local-b", roles=["pods"])
    result = services.report_local()
    assert result["nodes"] == 2 and result["samples"] >= 2 * 10
    for node in (a, b):
        metrics = dict(Sample.objects.filter(node=node).values_list("metric", "value"))
        assert set(NODE_METRICS) <= set(metrics), sorted(metrics)
        assert metrics["mem.total_bytes"] == _meminfo_total()
        assert 0 <= metrics["cpu.percent"] <= 100
        assert metrics["load.1"] == pytest.approx(float(Path("/proc/loadavg").read_text().split()[0]), abs=5)
        assert NodeReport.objects.get(node=node).services["runc"]["state"] == "up"
    assert (tmp_path / "node" / "metrics-state.json").exists()  # the next run's rates start from here


@pytest.mark.django_db
@pytest.mark.usefixtures("node_root")
def test_local_reporter_reads_a_real_pods_usage(tenant_a):
    """A pod running in runc: its memory, limit and pids come from ``pod_stats``, its CPU percent
    from two reports' cpu seconds."""
    services._collector = None
    node = node_in(tenant_a, "local-pods", roles=["pods"])
    pod = pod_in(tenant_a, 1, node=node)
    LocalDriver().pod_create(PodSpec(id=pod.container_id, memory_mb=64, pids=32))
    services.report_local()
    services.report_local()
    metrics = dict(Sample.objects.filter(node=node, metric__startswith=f"pod.{pod.container_id}.")
                   .values_list("metric", "value"))  # fmt: skip
    prefix = f"pod.{pod.container_id}."
    assert metrics[prefix + "memory_limit_bytes"] == 64 * 1024 * 1024
    assert metrics[prefix + "memory_bytes"] > 0 and metrics[prefix + "pids"] >= 1
    assert 0 <= metrics[prefix + "cpu_percent"] <= 100 * os.cpu_count()


def test_collector_rates_from_two_readings(tmp_path):
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal: 1000 kB\nMemAvailable: 250 kB\n")
    (proc / "loadavg").write_text("0.50 0.40 0.30 1/100 1\n")

    def counters(busy, idle, rx, tx):
        (proc / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\n")
        (proc / "net" / "dev").write_text(
            f"h1\nh2\n    lo: 999 0 0 0 0 0 0 0 999 0 0 0 0 0 0 0\n  eth0: {rx} 0 0 0 0 0 0 0 {tx} 0 0 0 0 0 0 0\n"
        )

    counters(100, 100, 1000, 2000)
    collector = Collector(disk_path=tmp_path, state_file=tmp_path / "state.json", proc=proc)
    collector.collect()  # first reading: measured over a short window (counters unchanged: 0%)
    state = json.loads((tmp_path / "state.json").read_text())
    state["time"] -= 10  # as if the previous reading was 10 seconds ago
    (tmp_path / "state.json").write_text(json.dumps(state))
    counters(400, 200, 11000, 2000)
    fresh = Collector(disk_path=tmp_path, state_file=tmp_path / "state.json", proc=proc)  # another process
    samples = {m: v for m, _ts, v in fresh.collect({"mp-1": {"memory_usage_bytes": 5, "pids": 2}})}
    assert samples["cpu.percent"] == 75.0  # 300 busy of 400 jiffies
    assert samples["net.rx_bytes_per_s"] == pytest.approx(1000, rel=0.05)  # loopback not counted
    assert samples["net.tx_bytes_per_s"] == 0
    assert samples["mem.used_bytes"] == 750 * 1024 and samples["mem.percent"] == 75.0
    assert (samples["load.1"], samples["load.15"]) == (0.5, 0.3)
    assert samples["pod.mp-1.memory_bytes"] == 5 and samples["pod.mp-1.pids"] == 2


@pytest.mark.django_db
def test_the_reporter_rollup_and_purge_run_in_beat(tenant_a, tmp_path, settings):
    """Celery beat and the embedded default's run_jobs run CELERY_BEAT_SCHEDULE's tasks by name."""
    from mpanel.celery import app

    settings.MPANEL_NODE_ROOT = tmp_path / "node"
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"metrics.report_local", "metrics.rollup", "metrics.purge"} <= scheduled
    node = node_in(tenant_a, "local-beat", roles=["web"])
    assert app.tasks["metrics.report_local"]()["samples"] >= len(NODE_METRICS)
    assert Sample.objects.filter(node=node).count() >= len(NODE_METRICS)
    assert set(app.tasks["metrics.rollup"]()) == {"minutes", "hours", "since", "until"}
    assert set(app.tasks["metrics.purge"]()) == {"samples", "minutes", "hours", "nonces"}


@pytest.mark.django_db(transaction=True)
def test_the_agent_process_reports_every_interval(tenant_a, live_server, tmp_path):
    """``python -m agent serve --panel-url … --node-id …``: the agent's own process posts its metrics."""
    node = secret_node(tenant_a, "agent-serve", transport="agent", address="http://127.0.0.1:9")
    secret_file = tmp_path / "secret"
    secret_file.write_text(agent_secret.derive(node))
    env = {**os.environ, "MPANEL_NODE_ROOT": str(tmp_path / "node")}
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "serve", "--port", "0", "--secret-file", str(secret_file),
         "--panel-url", live_server.url, "--node-id", str(node.pk), "--interval", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: Sample.objects.filter(node=node, metric="cpu.percent").count() >= 2, timeout=60,
                 message="two reports from the agent's process")  # fmt: skip
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert NodeReport.objects.get(node=node).samples_total >= 2 * len(NODE_METRICS)


@pytest.mark.django_db(transaction=True)
def test_agent_reports_over_http(tenant_a, live_server, tmp_path):
    """``python -m agent report --once``: a real process posts a signed batch to the panel over HTTP."""
    node = secret_node(tenant_a, "agent-1", transport="agent", address="http://127.0.0.1:9")
    secret_file = tmp_path / "secret"
    secret_file.write_text(agent_secret.derive(node))
    env = {**os.environ, "MPANEL_NODE_ROOT": str(tmp_path / "node")}
    command = [sys.executable, "-m", "agent", "report", "--once", "--panel-url", live_server.url,
               "--node-id", str(node.pk), "--secret-file", str(secret_file)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["stored"] == answer["received"] >= len(NODE_METRICS)
    assert set(NODE_METRICS) <= set(Sample.objects.filter(node=node).values_list("metric", flat=True))
    assert NodeReport.objects.get(node=node).services["runc"]["state"] == "up"
    # A wrong secret is refused and the agent says so.
    secret_file.write_text("x" * 64)
    refused = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "401" in refused.stderr
