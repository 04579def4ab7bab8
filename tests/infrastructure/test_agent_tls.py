"""Secrets in transit to nodes: the agent over TLS with its certificate pinned by the panel.

Real agent processes on loopback (tests/infrastructure/test_agent.py's AgentProcess), real jobs whose bodies carry
a database admin password, a real PostgreSQL behind the node: the job succeeds over TLS and the
password never crosses the wire in clear; an agent with another key on the same address gets
nothing; plain HTTP off loopback is refused by the panel and by the agent; a secret rotation keeps
every call working while the agent moves to the new secret, and the old one is refused after.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agent import signing, tls
from agent.server import PlainHttpRefused, serve
from apps.audit.models import AuditEvent
from apps.databases import services as db_services
from apps.databases.models import DatabaseServer
from apps.jobs import services as job_services
from apps.jobs.models import Job, JobStatus
from apps.nodes import agent_secret
from apps.nodes import services as node_services
from apps.nodes.drivers import AgentDriver, NodeError, driver_for
from apps.nodes.models import Node
from apps.tenancy.roles import Role
from tests.conftest import ROOT, admin_login, client_for, make_user, wait_for
from tests.databases_support import postgres_server  # noqa: F401
from tests.infrastructure.test_agent import AgentProcess, agent_fingerprint, agent_node, post  # noqa: F401

CAPACITY = {"vcpu": 1, "memory_mb": 512, "disk_gb": 5, "max_pods": 1}
NOT_LOOPBACK = ["10.0.0.5", "192.168.1.20", "0.0.0.0", "node.example.net", "[2001:db8::1]", "127.example.net"]
LOOPBACK = ["127.0.0.1", "127.8.9.10", "[::1]", "localhost"]


class RecordingProxy:
    """A TCP relay between the panel and the agent that keeps every byte it forwards: what an
    eavesdropper on the network between them would see."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.seen = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self):
        self.listener.close()


def db_server_on(node: Node, fx, db) -> DatabaseServer:
    """A database server on ``node``; its check job (which sends the admin password to the node) is
    stored, not run."""
    Node.all_tenants.filter(pk=node.pk).update(roles=["db"])
    node.refresh_from_db()
    with fx.scope():
        return db_services.server_create(tenant=fx.tenant, node=node, engine=db.engine, host=db.host, port=db.port,
                                         admin_user=db.admin_user, admin_password=db.admin_password)  # fmt: skip


def check_job(server: DatabaseServer, fx) -> Job:
    """One ``database.server.check`` job, run here and now: it calls the node with the password."""
    with fx.scope():
        db_services.check_job(server, None)
        job = Job.all_tenants.filter(type="database.server.check", object_id=str(server.pk)).latest("created_at")
    job_services.run_job(job.pk)
    job.refresh_from_db()
    return job


@pytest.fixture
def stored_jobs(monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


# --- TLS with the pinned certificate -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("stored_jobs")
def test_a_job_runs_over_tls_with_the_pinned_certificate(agent_node, tenant_a, postgres_server):  # noqa: F811
    node, agent = agent_node
    proxy = RecordingProxy(agent.port)
    try:
        Node.all_tenants.filter(pk=node.pk).update(address=f"https://127.0.0.1:{proxy.port}")
        server = db_server_on(node, tenant_a, postgres_server)
        job = check_job(server, tenant_a)
        assert job.status == JobStatus.SUCCEEDED, job.last_error
        server.refresh_from_db()
        assert server.status == "active" and server.version
    finally:
        proxy.close()
    assert agent.served_calls() >= 1 and proxy.connections >= 1
    # What went over the wire: TLS records (a handshake first), never the password nor the call.
    assert proxy.seen[:1] == b"\x16" and proxy.seen[1:2] == b"\x03"
    for clear in (postgres_server.admin_password.encode(), b"db_check", b"/v1/call", b"X-Mpanel-Signature"):
        assert clear not in proxy.seen, clear


@pytest.mark.django_db
def test_the_node_key_is_private_and_kept_across_restarts(agent_node):  # noqa: F811
    node, agent = agent_node
    tls_dir = agent.root / "tls"
    assert oct(tls_dir.stat().st_mode & 0o777) == "0o700"
    for name in ("agent.key", "agent.crt"):
        assert oct((tls_dir / name).stat().st_mode & 0o777) == "0o600", name
    # The agent announces its pin at start, the same the operator gave at registration.
    assert tls.shown(node.tls_fingerprint) in agent.log.read_text()
    agent.stop(cleanup=False)
    agent.start()
    assert agent.fingerprint == node.tls_fingerprint
    assert node_services.node_heartbeat(node=node) is True


@pytest.mark.django_db
@pytest.mark.usefixtures("stored_jobs")
def test_a_node_presenting_another_certificate_gets_nothing(agent_node, tenant_a, tmp_path):  # noqa: F811
    """Another agent, with the node's secret even but another key, on the node's address: the job
    fails with a clear error and the impostor never reads a request (the body never left)."""
    node, agent = agent_node
    password = "the-admin-password-of-db-1"
    with tenant_a.scope():
        Node.all_tenants.filter(pk=node.pk).update(roles=["db"])
        node.refresh_from_db()
        server = db_services.server_create(tenant=tenant_a.tenant, node=node, engine="postgresql", host="127.0.0.1",
                                           port=5432, admin_user="admin", admin_password=password)  # fmt: skip
    agent.stop()
    impostor = AgentProcess(agent.secret, tmp_path / "impostor-node", tmp_path, port=agent.port, name="impostor",
                            tls_dir=tmp_path / "impostor-tls").start()  # fmt: skip
    try:
        assert impostor.fingerprint != node.tls_fingerprint
        job = check_job(server, tenant_a)
        assert job.status == JobStatus.FAILED  # permanent: retrying cannot make the key right
        assert f"not the pinned {tls.shown(node.tls_fingerprint)}" in job.last_error
        assert tls.shown(impostor.fingerprint) in job.last_error and "nothing was sent" in job.last_error
        server.refresh_from_db()
        assert server.status == "error" and "pinned" in server.last_error
        assert node_services.node_heartbeat(node=node) is False
        node.refresh_from_db()
        assert "pinned" in node.last_error
        assert impostor.served_calls() == 0
        assert password not in impostor.log.read_text()
    finally:
        impostor.stop()


# --- plain HTTP: loopback only, on both sides ------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_plain_http_off_loopback_is_refused_by_the_panel(tenant_a, host):
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    url = reverse("node-list")
    pin = {"tls_fingerprint": "sha256:" + "cd" * 32}
    base = {"hostname": "n1", "transport": "agent", "roles": ["pods"], "capacity": CAPACITY, **pin}
    events = AuditEvent.objects.count()
    for transport in ("agent", "local"):
        response = client.post(url, {**base, "transport": transport, "address": f"http://{host}:8700"}, format="json")
        assert response.status_code == 400 and "loopback" in response.json()["address"][0], response.content
    assert not Node.all_tenants.exists() and AuditEvent.objects.count() == events
    # Nor by an edit, and an address with TLS is taken.
    created = client.post(url, {**base, "address": f"https://{host}:8700"}, format="json")
    assert created.status_code == 201, created.content
    detail = reverse("node-detail", kwargs={"pk": created.json()["id"]})
    response = client.patch(detail, {"address": f"http://{host}:8700"}, format="json")
    assert response.status_code == 400 and "address" in response.json()
    assert Node.all_tenants.get().address == tls.parse_address(f"https://{host}:8700").url
    # A row written before the rule (or around it) is refused by the driver, before any connection.
    Node.all_tenants.update(address=f"http://{host}:8700", secret_salt="s")
    with pytest.raises(NodeError, match="loopback") as err:
        driver_for(Node.all_tenants.get())
    assert err.value.permanent


@pytest.mark.django_db
@pytest.mark.parametrize("host", LOOPBACK)
def test_plain_http_on_loopback_needs_no_pin(tenant_a, host):
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    data = {"hostname": "n1", "transport": "agent", "roles": ["pods"], "capacity": CAPACITY,
            "address": f"http://{host}:8700"}  # fmt: skip
    response = client.post(reverse("node-list"), data, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["tls_fingerprint"] is None


@pytest.mark.django_db
def test_an_https_agent_needs_the_pin_of_its_certificate(tenant_a):
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    data = {"hostname": "n1", "transport": "agent", "roles": ["pods"], "capacity": CAPACITY,
            "address": "https://10.0.0.5:8700"}  # fmt: skip
    for bad in (None, "", "sha256:xyz", "ab" * 31, "sha1:" + "ab" * 32, 42):
        payload = data if bad is None else {**data, "tls_fingerprint": bad}
        response = client.post(reverse("node-list"), payload, format="json")
        assert response.status_code == 400 and "tls_fingerprint" in response.json(), (bad, response.content)
    assert not Node.all_tenants.exists()
    colons = ":".join(["AB"] * 32)
    for i, good in enumerate((f"sha256:{'ab' * 32}", "AB" * 32, colons)):
        response = client.post(reverse("node-list"), {**data, "hostname": f"n{i}", "tls_fingerprint": good},
                               format="json")  # fmt: skip
        assert response.status_code == 201, response.content
        assert response.json()["tls_fingerprint"] == "sha256:" + "ab" * 32


@pytest.mark.parametrize("host", [h.strip("[]") for h in NOT_LOOPBACK if "example" not in h])
def test_the_agent_refuses_plain_http_off_loopback(host, tmp_path):
    with pytest.raises(PlainHttpRefused, match="loopback"):
        serve(host, 0, "s" * 64, str(tmp_path), plain_http=True)
    assert not (tmp_path / "tls").exists()  # refused before anything was made or bound


def test_the_agent_command_refuses_plain_http_off_loopback(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 64)
    result = subprocess.run(
        [sys.executable, "-m", "agent", "serve", "--host", "0.0.0.0", "--port", "0", "--plain-http",
         "--secret-file", str(secret), "--root", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "only a loopback address may go without TLS" in result.stderr


@pytest.mark.django_db
def test_a_plain_http_agent_on_loopback_serves(tenant_a, tmp_path):
    with tenant_a.scope():
        node, secret = node_services.node_create(tenant=tenant_a.tenant, data={
            "hostname": "plain", "transport": "agent", "address": "http://127.0.0.1:9", "roles": ["pods"],
            "capacity": CAPACITY})  # fmt: skip
    agent = AgentProcess(secret, tmp_path / "plain-node", tmp_path, plain_http=True).start()
    try:
        Node.all_tenants.filter(pk=node.pk).update(address=agent.url)
        node.refresh_from_db()
        assert node_services.node_heartbeat(node=node) is True
        assert not (agent.root / "tls").exists()
    finally:
        agent.stop()


# --- secret rotation without downtime -------------------------------------------------------------


def write_atomically(path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


@pytest.mark.django_db
@pytest.mark.usefixtures("stored_jobs")
def test_secret_rotation_old_and_new_both_work_during_the_grace_then_only_the_new(
    agent_node,  # noqa: F811
    tenant_a,
    postgres_server,  # noqa: F811
):
    node, agent = agent_node
    server = db_server_on(node, tenant_a, postgres_server)
    assert check_job(server, tenant_a).status == JobStatus.SUCCEEDED
    old = agent.secret
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = client.post(reverse("node-rotate-secret", kwargs={"pk": node.pk}), {}, format="json")
    assert response.status_code == 200, response.content
    new = response.json()["secret"]
    assert new != old and len(new) == 64
    node.refresh_from_db()
    assert node.secret_hash == Node.hash_secret(new) and agent_secret.valid_secrets(node) == [new, old]
    assert timedelta(minutes=59) < node.secret_previous_until - timezone.now() <= timedelta(hours=1)
    assert new not in str(AuditEvent.objects.filter(action="node.rotate_secret").values_list("changes", flat=True))

    # Calls keep running all along, with what the panel holds during the grace.
    failures, calls, stop = [], [0], threading.Event()
    driver = driver_for(node)

    def hammer():
        while not stop.is_set():
            try:
                driver.heartbeat()
                calls[0] += 1
            except NodeError as exc:
                failures.append(exc.message)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        # The agent still has the old secret: the job works.
        assert check_job(server, tenant_a).status == JobStatus.SUCCEEDED
        # The operator installs the new secret; the running agent takes it without a restart.
        write_atomically(agent.secret_file, new)
        url, body = f"{agent.url}/v1/call", b'{"op": "pod_list", "args": {}}'
        wait_for(lambda: post(url, body, signing.sign(new, "POST", "/v1/call", body))[0] == 200,
                 message="the agent to take the new secret")  # fmt: skip
        assert post(url, body, signing.sign(old, "POST", "/v1/call", body)) == (
            401, {"error": "bad signature", "permanent": False})  # fmt: skip
        assert check_job(server, tenant_a).status == JobStatus.SUCCEEDED
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert failures == [] and calls[0] >= 5

    # The grace is over: the panel signs with the new secret only, and the job still works.
    Node.all_tenants.filter(pk=node.pk).update(secret_previous_until=timezone.now() - timedelta(seconds=1))
    node.refresh_from_db()
    assert driver_for(node).secrets == [new]
    assert check_job(server, tenant_a).status == JobStatus.SUCCEEDED
    assert agent.served_calls() >= calls[0] + 4
    assert not Job.all_tenants.filter(status=JobStatus.FAILED).exists()


@pytest.mark.django_db
def test_a_rotation_before_the_agent_has_the_new_secret_only_ends_with_the_grace(agent_node, tenant_a):  # noqa: F811
    """Without the grace (a leaked secret: grace_seconds=0) the agent refuses the panel until it is
    given the new secret: that is the point of ending the old one now."""
    node, agent = agent_node
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    url = reverse("node-rotate-secret", kwargs={"pk": node.pk})
    for bad in (-1, 7 * 24 * 3600 + 1, "soon", 1.5, True, None):
        response = client.post(url, {"grace_seconds": bad}, format="json")
        assert response.status_code == 400 and "grace_seconds" in response.json(), (bad, response.content)
    node.refresh_from_db()
    assert agent_secret.derive(node) == agent.secret  # nothing rotated by a refused request
    response = client.post(url, {"grace_seconds": 0}, format="json")
    assert response.status_code == 200 and response.json()["secret_previous_until"] is None
    node.refresh_from_db()
    with pytest.raises(NodeError, match="bad signature"):
        driver_for(node).heartbeat()
    write_atomically(agent.secret_file, response.json()["secret"])
    wait_for(lambda: node_services.node_heartbeat(node=node), message="the agent to take the new secret")


@pytest.mark.django_db
def test_operators_rotate_a_secret_in_the_admin(client, agent_node):  # noqa: F811
    node, agent = agent_node
    operator = make_user("ops-rotate@mpanel.test", is_staff=True, is_superuser=True)
    console = admin_login(client, operator)
    changelist = reverse("admin:nodes_node_changelist")
    page = console.post(changelist, {"action": "rotate_secret", "_selected_action": [str(node.pk)]})
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    node.refresh_from_db()
    new = agent_secret.derive(node)
    assert new in page.content.decode() and agent.secret not in page.content.decode()
    assert agent_secret.valid_secrets(node) == [new, agent.secret]
    assert AuditEvent.objects.filter(action="node.rotate_secret", object_id=str(node.pk)).exists()
    assert node_services.node_heartbeat(node=node) is True  # the agent still has the old one: fine


# --- certificate rotation ----------------------------------------------------------------------------


def rotate_cert(agent: AgentProcess, *extra: str) -> str:
    out = subprocess.run([sys.executable, "-m", "agent", "rotate-cert", "--root", str(agent.root), *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
    return tls.normalize_fingerprint(out.split()[-1])


@pytest.mark.django_db
def test_certificate_rotation_accepts_the_next_key_then_only_it(agent_node, tenant_a):  # noqa: F811
    node, agent = agent_node
    old = node.tls_fingerprint
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    url = reverse("node-rotate-certificate", kwargs={"pk": node.pk})
    for bad in ({}, {"tls_fingerprint": "nope"}, {"tls_fingerprint": tls.shown(old)}):
        response = client.post(url, bad, format="json")
        assert response.status_code == 400 and "tls_fingerprint" in response.json(), (bad, response.content)
    nxt = rotate_cert(agent)
    assert nxt != old and rotate_cert(agent) == nxt  # prepared twice: the same key
    response = client.post(url, {"tls_fingerprint": tls.shown(nxt)}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["tls_fingerprint"] == tls.shown(old)
    assert response.json()["tls_fingerprint_next"] == tls.shown(nxt)
    node.refresh_from_db()
    assert node_services.node_heartbeat(node=node) is True  # still the old key: accepted
    node.refresh_from_db()
    assert node.tls_fingerprint == old and node.tls_fingerprint_next == nxt

    assert rotate_cert(agent, "--activate") == nxt  # the running agent serves it from its next connection
    assert node_services.node_heartbeat(node=node) is True
    node.refresh_from_db()
    assert node.tls_fingerprint == nxt and node.tls_fingerprint_next == ""
    assert AuditEvent.objects.filter(action="node.certificate_rotated", object_id=str(node.pk)).exists()
    # The old key is no longer accepted.
    with pytest.raises(NodeError, match="not the pinned"):
        AgentDriver(agent.url, agent.secret, pins=[old]).heartbeat()
    assert agent.fingerprint == nxt


def test_fingerprints_match_openssl(tmp_path):
    """The pin is the SHA-256 of the certificate's SubjectPublicKeyInfo, as openssl computes it."""
    fingerprint = tls.ensure_identity(tmp_path)
    pubkey = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "agent.crt"), "-pubkey", "-noout"],
                            capture_output=True, check=True).stdout  # fmt: skip
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pubkey, capture_output=True,
                         check=True).stdout  # fmt: skip
    assert hashlib.sha256(der).hexdigest() == fingerprint == agent_fingerprint(tmp_path.parent, tmp_path)
