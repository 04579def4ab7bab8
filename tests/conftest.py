"""Shared fixtures: tenants with one member per role, authenticated API clients, a real Celery worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from agent import rootfs
from apps.accounts.models import AuthToken
from apps.tenancy.models import Membership, Tenant
from apps.tenancy.roles import ORDERED, Role
from apps.tenancy.scoping import tenant_scope

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every item gets a node id of its own. schemathesis's items (one per API operation) are all
    named ``test_fuzz_quick[<METHOD> <path>]`` but, under pytest 9, carry their function's bare node
    id; pytest-xdist keys its schedule by node id, so it ran one of them and counted the 360 others
    as done. ``test_every_item_has_its_own_node_id`` keeps it so."""
    for item in items:
        node_id = getattr(item, "id", None)  # pytest 9's structured node id (before 9 the ids were whole)
        base, bracket, params = item.name.partition("[")
        if node_id is not None and bracket and node_id.params is None and node_id.names[-1:] == (base,):
            item._id = node_id.with_params(params.removesuffix("]"))


@dataclass
class TenantFixture:
    tenant: Tenant
    users: dict[Role, object] = field(default_factory=dict)

    @property
    def owner(self):
        return self.users[Role.OWNER]

    def scope(self):
        return tenant_scope(self.tenant)


@pytest.fixture(scope="session", autouse=True)
def _no_mounts_left(tmp_path_factory):
    """Pods' overlay roots mounted under a test's folder or the default node root (a test without
    ``node_root``'s cleanup, or a failing one) are detached when the session ends, so no mount outlives
    its folder, and no container outlives the run."""
    yield
    rootfs.unmount_under(tmp_path_factory.getbasetemp())
    # The default node root, where pods made through the API by eager jobs run: a test run's own (under the
    # temporary folder: scripts/test.sh's, one per xdist worker) has its containers stopped too, so none
    # outlives the run; a developer's own node root (``var/node`` of a plain pytest) is left alone.
    node_root = Path(settings.MPANEL_NODE_ROOT).resolve()
    if node_root.is_relative_to(Path(tempfile.gettempdir()).resolve()):
        from tests.pods_support import stop_containers

        stop_containers(node_root)
        rootfs.unmount_under(node_root)


def make_user(email: str, password: str = PASSWORD, **extra):
    return get_user_model().objects.create_user(email, password, **extra)


def make_tenant(name: str) -> TenantFixture:
    tenant = Tenant.objects.create(name=name)
    fx = TenantFixture(tenant=tenant)
    slug = tenant.slug
    for role in ORDERED:
        user = make_user(f"{role.value.lower()}@{slug}.test")
        Membership.objects.create(tenant=tenant, user=user, role=role)
        fx.users[role] = user
    return fx


@pytest.fixture
def tenant_a(db) -> TenantFixture:
    return make_tenant("Tenant A")


@pytest.fixture
def tenant_b(db) -> TenantFixture:
    return make_tenant("Tenant B")


def client_for(user=None, tenant: Tenant | None = None) -> APIClient:
    """An API client with a fresh bearer session for ``user`` acting in ``tenant``."""
    client = APIClient()
    if user is not None:
        _token, raw = AuthToken.issue(user=user, ttl=settings.MPANEL_TOKEN_TTL)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    if tenant is not None:
        client.defaults["HTTP_X_TENANT_ID"] = str(tenant.pk)
    return client


def operator_client_for(user) -> APIClient:
    """A platform operator's API session that passed TOTP, as operators' platform-wide powers
    require (apps/accounts/operators.py); ``tests/accounts/test_operators_api.py`` goes through the real login."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    if not TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        TOTPDevice.objects.create(user=user, name="test", confirmed=True)
    client = APIClient()
    _token, raw = AuthToken.issue(user=user, ttl=settings.MPANEL_TOKEN_TTL, method="totp")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api():
    return client_for


def admin_login(client, user):
    """A browser session in the operators' admin: logged in and verified by a TOTP device, as the
    admin requires 2FA (django-otp's OTPAdminSite, see docs/modules/security-center.md)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client.force_login(user)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="test", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


# --- a real Celery worker on the test database --------------------------------------------------


def _worker_env(db_name: str, queue: str) -> dict[str, str]:
    env = dict(os.environ)
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + db_name
    env.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="mpanel.settings_test",
        MPANEL_JOBS_EAGER="0",
        MPANEL_TEST_WORKER="1",
        PYTHONUNBUFFERED="1",
        MPANEL_CELERY_QUEUE=queue,
    )
    return env


class Worker:
    def __init__(self, db_name: str, logfile: Path, queue: str):
        self.db_name = db_name
        self.queue = queue
        self.logfile = logfile
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        log = open(self.logfile, "ab")  # noqa: SIM115 - the worker writes to it until stopped
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "mpanel",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "1",
                "--pool",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"test-{os.getpid()}-{time.time_ns()}@%h",
            ],
            cwd=ROOT,
            env=_worker_env(self.db_name, self.queue),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.logfile.read_text()[-3000:]}")
            if b" ready." in self.logfile.read_bytes():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"celery worker did not start: {self.logfile.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children): no clean shutdown."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def celery_worker(transactional_db, settings, tmp_path):
    """A real Celery worker process (prefork) on Redis, using the test database.

    Jobs are dispatched through the broker (not in-process) while it runs.
    """
    if not os.environ.get("REDIS_URL") or "postgres" not in os.environ.get("DATABASE_URL", ""):
        pytest.fail("the worker tests need DATABASE_URL (PostgreSQL) and REDIS_URL: run them with `make test`")
    from django.db import connection

    from mpanel.celery import app

    # A queue of its own, so that no other test run's worker takes these messages.
    queue = f"test-{os.getpid()}-{time.time_ns()}"
    previous_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    settings.MPANEL_JOBS_EAGER = False
    worker = Worker(connection.settings_dict["NAME"], tmp_path / "worker.log", queue)
    try:
        yield worker.start()
    finally:
        worker.stop()
        app.conf.task_default_queue = previous_queue


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
