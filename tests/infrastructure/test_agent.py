"""The ``agent`` transport: ``python -m agent serve`` as a separate process on loopback, over TLS
with the certificate the panel pinned (tests/infrastructure/test_agent_tls.py tests the TLS side itself).

Requests are HMAC-signed and time-limited; unsigned, forged, stale and replayed ones are refused.
The pod flow runs through it with a real Celery worker, exactly as with the local transport.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.core.cache import cache

from agent import signing, tls
from agent.dispatch import OPERATION_MODULES, call
from agent.errors import AgentError
from agent.registry import OPERATIONS, Registry
from agent.runtime import NodeRuntime, PodSpec
from apps.nodes import services as node_services
from apps.nodes.drivers import AgentDriver, NodeError, driver_for
from apps.nodes.models import Node, Transport
from apps.tenancy.roles import Role
from tests.conftest import ROOT, client_for, wait_for
from tests.hosting.test_cloudpods_runc import pod_url, wait_runtime, wait_status
from tests.pods_support import cleanup_containers, freezer_state, memory_cgroup_limit

MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_fingerprint(root: Path, tls_dir: Path | None = None) -> str:
    """What the operator does before registering the node: ``python -m agent fingerprint``."""
    cmd = [sys.executable, "-m", "agent", "fingerprint", "--root", str(root)]
    cmd += ["--tls-dir", str(tls_dir)] if tls_dir else []
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30, check=True).stdout
    return tls.normalize_fingerprint(out.split("current", 1)[1].split()[0])


class AgentProcess:
    """``python -m agent serve`` on 127.0.0.1: TLS with its own key (under ``<root>/tls`` unless
    ``tls_dir``), or plain HTTP with ``plain_http``; ``port`` to take the address of another."""

    def __init__(self, secret: str, root: Path, workdir: Path, *, port: int | None = None,
                 tls_dir: Path | None = None, plain_http: bool = False, name: str = "agent"):  # fmt: skip
        self.secret = secret
        self.root = root
        self.port = port or free_port()
        self.plain_http = plain_http
        self.tls_dir = tls_dir
        self.url = f"{'http' if plain_http else 'https'}://127.0.0.1:{self.port}"
        self.secret_file = workdir / f"{name}.secret"
        self.secret_file.write_text(secret + "\n")
        self.secret_file.chmod(0o600)
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def fingerprint(self) -> str:
        return agent_fingerprint(self.root, self.tls_dir)

    def start(self) -> AgentProcess:
        cmd = [sys.executable, "-m", "agent", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--secret-file", str(self.secret_file), "--root", str(self.root)]
        cmd += ["--plain-http"] if self.plain_http else []
        cmd += ["--tls-dir", str(self.tls_dir)] if self.tls_dir else []
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        context = None if self.plain_http else tls.client_context()  # a health check needs no pin

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/health", timeout=1, context=context) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(up, timeout=20, message="the agent to listen")
        return self

    def served_calls(self) -> int:
        """How many ``POST /v1/call`` this agent read (its access log)."""
        return self.log.read_text().count('"POST /v1/call')

    def stop(self, *, cleanup: bool = True) -> None:
        """``cleanup``: remove the node root (its containers, and its TLS key unless ``tls_dir``)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if cleanup:
            cleanup_containers(self.root)


@pytest.fixture
def agent_node(tenant_a, tmp_path, settings):
    """An agent node of tenant A, registered with its certificate's pin, and its agent running as a
    separate process over TLS."""
    settings.MPANEL_NODE_ROOT = tmp_path / "local-node"  # must stay unused: the agent does the work
    root = tmp_path / "agent-node"
    port = free_port()
    with tenant_a.scope():
        node, secret = node_services.node_create(
            tenant=tenant_a.tenant,
            data={
                "hostname": "agent-1",
                "transport": Transport.AGENT,
                "address": f"https://127.0.0.1:{port}",
                "tls_fingerprint": agent_fingerprint(root),
                "roles": ["pods"],
                "capacity": {"vcpu": 8, "memory_mb": 8192, "disk_gb": 100, "max_pods": 20},
            },
        )
    agent = AgentProcess(secret, root, tmp_path, port=port)
    agent.start()
    try:
        yield node, agent
    finally:
        agent.stop()


def post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    context = tls.client_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.django_db
def test_only_fresh_requests_signed_by_the_node_secret_are_served(agent_node):
    _node, agent = agent_node
    url = f"{agent.url}/v1/call"
    body = json.dumps({"op": "pod_list", "args": {}}).encode()

    assert post(url, body, {}) == (401, {"error": "unsigned request", "permanent": False})
    forged = signing.sign("x" * 64, "POST", "/v1/call", body)
    assert post(url, body, forged)[1]["error"] == "bad signature"
    stale = signing.sign(agent.secret, "POST", "/v1/call", body, now=time.time() - 3600)
    assert post(url, body, stale)[1]["error"] == "stale request"
    future = signing.sign(agent.secret, "POST", "/v1/call", body, now=time.time() + 3600)
    assert post(url, body, future)[0] == 401

    good = signing.sign(agent.secret, "POST", "/v1/call", body)
    assert post(url, body, good) == (200, {"result": []})
    assert post(url, body, good) == (401, {"error": "replayed request", "permanent": False})
    # A restarted agent has forgotten its nonces: what was signed before it started is refused.
    verifier = signing.Verifier(agent.secret)
    before_start = signing.sign(agent.secret, "POST", "/v1/call", body, now=verifier.started - 1)
    assert verifier.verify(before_start, "POST", "/v1/call", body) == "stale request"
    assert verifier.verify(signing.sign(agent.secret, "POST", "/v1/call", body), "POST", "/v1/call", body) is None
    tampered = json.dumps({"op": "pod_delete", "args": {"id": "x"}}).encode()
    assert post(url, tampered, signing.sign(agent.secret, "POST", "/v1/call", body))[1]["error"] == "bad signature"

    # A signed but malformed call is a permanent error; an unknown operation too.
    bad = b"{not json"
    assert post(url, bad, signing.sign(agent.secret, "POST", "/v1/call", bad))[0] == 400
    unknown = json.dumps({"op": "rm_rf", "args": {}}).encode()
    status, answer = post(url, unknown, signing.sign(agent.secret, "POST", "/v1/call", unknown))
    assert status == 422 and answer["permanent"] is True


@pytest.mark.django_db
def test_driver_errors_and_heartbeat_through_the_agent(agent_node):
    node, agent = agent_node
    driver = driver_for(node)
    assert isinstance(driver, AgentDriver)
    with pytest.raises(NodeError) as err:
        driver.pod_create(PodSpec(id="bad id!"))
    assert err.value.permanent
    with pytest.raises(NodeError) as err:
        driver.pod_pause("mp-does-not-exist")
    assert not err.value.permanent and "does not exist" in err.value.message
    with pytest.raises(NodeError, match="bad signature"):
        AgentDriver(agent.url, "wrong-secret" * 4, pins=[node.tls_fingerprint]).heartbeat()
    assert node_services.node_heartbeat(node=node) is True
    node.refresh_from_db()
    assert node.reported["pods"] == [] and node.reported["runc"].startswith("runc")


def test_agent_refuses_to_start_without_a_proper_secret(tmp_path):
    weak = tmp_path / "weak"
    weak.write_text("short")
    result = subprocess.run(
        [sys.executable, "-m", "agent", "serve", "--secret-file", str(weak), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "secret" in result.stderr


@pytest.mark.worker
def test_pod_flow_through_the_agent(agent_node, celery_worker, tenant_a, settings):
    node, agent = agent_node
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    created = client.post("/api/v1/cloudpods/", {"name": "remote", "plan": "pod-xs"}, format="json")
    assert created.status_code == 201 and created.json()["node"] == str(node.pk)
    pod_id = created.json()["id"]
    body = wait_status(client, pod_id, "running")
    container_id = body["container_id"]
    runtime = NodeRuntime(agent.root)  # the agent's node, looked at directly
    pid = runtime.pod_state(container_id)["pid"]
    assert memory_cgroup_limit(pid) == 128 * MB
    assert body["runtime"]["memory_limit_bytes"] == 128 * MB

    assert client.post(pod_url(pod_id, "resize"), {"plan": "pod-s"}, format="json").status_code == 202
    wait_status(client, pod_id, "running")
    assert memory_cgroup_limit(pid) == 256 * MB

    assert client.post(pod_url(pod_id, "suspend")).status_code == 202
    wait_runtime(client, pod_id, "paused")
    assert freezer_state(pid) == "FROZEN"
    assert client.post(pod_url(pod_id, "resume")).status_code == 202
    wait_runtime(client, pod_id, "running")
    assert freezer_state(pid) == "THAWED"

    assert client.delete(pod_url(pod_id)).status_code == 202
    wait_status(client, pod_id, "deleted")
    assert runtime.pod_list() == []
    assert not (agent.root / "bundles" / container_id).exists()
    assert Node.all_tenants.get(pk=node.pk).allocated_pods == 0
    assert not (settings.MPANEL_NODE_ROOT / "bundles").exists()  # nothing ran on the local node

    # The agent stopped: the pod's runtime is unknown, never "running".
    recreated = client.post("/api/v1/cloudpods/", {"name": "remote2", "plan": "pod-xs"}, format="json")
    wait_status(client, recreated.json()["id"], "running")
    agent.proc.terminate()
    agent.proc.wait(timeout=10)
    cache.clear()  # the runtime is cached for a few seconds
    assert client.get(pod_url(recreated.json()["id"])).json()["runtime"]["state"] == "unknown"


# --- the operations by name (agent.registry, agent.dispatch) ----------------------------------------

OPERATION_OWNERS = {
    "agent.runtime": ["pod_create", "pod_state", "pod_stats", "pod_pause", "pod_resume", "pod_update", "pod_delete",
                      "pod_list", "heartbeat", "pod_restart"],
    "agent.web": ["site_ensure", "site_remove", "site_purge", "site_state", "site_disk_usage"],
    "agent.bandwidth": ["site_bandwidth"],
    "agent.files": ["file_list", "file_stat", "file_read", "file_write", "file_mkdir", "file_move", "file_copy",
                    "file_delete", "file_chmod", "file_compress", "file_extract", "site_world_writable"],
    "agent.dns": ["dns_zone_ensure", "dns_zone_delete"],
    "agent.mail": ["mail_sync", "mail_tls"],
    "agent.databases": ["db_check", "db_security", "db_sizes", "db_database_ensure", "db_database_drop",
                        "db_user_ensure", "db_user_drop", "db_grant", "db_revoke"],
    "agent.certs": ["acme_challenge_put", "acme_challenge_remove"],
    "agent.backups": ["backup_repo_init", "backup_repo_delete", "backup_stats", "backup_run", "backup_restore",
                      "backup_forget", "backup_check", "backup_unlock", "backup_snapshots", "backup_file_stat",
                      "backup_file_read", "backup_drill", "backup_restore_progress", "backup_mail_hold",
                      "backup_repo_test"],
}  # fmt: skip


def test_every_operation_is_registered_by_the_module_that_implements_it():
    owners = {name: operation.__module__ for name, operation in OPERATIONS.items()}
    assert owners == {name: module for module, names in OPERATION_OWNERS.items() for name in names}
    assert sorted(m.__name__ for m in OPERATION_MODULES) == sorted(OPERATION_OWNERS)


def test_an_operation_name_has_one_owner():
    registry: Registry = Registry("agent operation")

    def first(node, args):
        return "first"

    def second(node, args):
        return "second"

    assert registry.register("x")(first) is first
    registry.register("x")(first)  # the same object again (a module imported twice): nothing happens
    with pytest.raises(ValueError, match="agent operation 'x' is registered twice"):
        registry.register("x")(second)
    assert registry.keys() == ["x"] and registry["x"] is first and len(registry) == 1
    with pytest.raises(ValueError, match="registered twice"):  # the node's own names are taken too
        OPERATIONS.register("pod_create")(second)
    assert OPERATIONS["pod_create"].__module__ == "agent.runtime"


def test_bad_calls_are_refused_by_name_before_anything_runs(tmp_path):
    runtime = NodeRuntime(tmp_path)
    refusals = [
        ("rm_rf", {}, "unknown operation 'rm_rf'"),
        ("pod_state", {"id": "bad id"}, "a valid container id is required"),
        ("pod_create", {}, "bad pod spec: 'id'"),
        ("site_state", {}, "a site id is required"),
        ("site_purge", {"id": "../x"}, "bad site id '../x'"),
        ("file_list", {"site": "s1", "max_unpacked": "x"}, "max_unpacked must be a number"),
        ("site_world_writable", {"site": "s1", "max_entries": "x"}, "the walk's limits must be numbers"),
        ("mail_sync", {}, "the mail spec needs its node id"),
        ("db_check", {}, "a database server (engine postgresql or mariadb) is required"),
    ]
    for op, args, message in refusals:
        with pytest.raises(AgentError) as err:
            call(runtime, op, args)
        assert (err.value.message, err.value.permanent) == (message, True), op
    assert call(runtime, "pod_list", {}) == []
    assert list(tmp_path.iterdir()) == []
