"""Crashes and restarts: work is neither lost nor done twice, and no request leaves half a change.

- Redis restarted (killed, so its queue and unacknowledged messages are gone) while jobs are in
  flight: a Redis and a Celery worker of this test's own (never the shared one), the sweeper
  sends the lost messages again, every job ends exactly once with one effect.
- The database connection of a request terminated by PostgreSQL in the middle of a service call:
  a clean JSON 503, nothing of the change stored (one transaction), and the retry succeeds.

A worker SIGKILLed during a job is tests/kernel/test_jobs_worker.py's
``test_killed_worker_job_is_recovered_by_the_sweeper``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.jobs import services
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.websites import services as website_services
from apps.websites.models import Website, WebsiteDomain
from tests.conftest import client_for, wait_for
from tests.kernel.test_jobs_worker import TunedWorker
from tests.support.models import JobCall, JobEffect
from tests.web_support import free_port, web_node_in

# --- Redis restarted with jobs in flight ---------------------------------------------------------


class Redis:
    """A throwaway redis-server on a loopback port, without persistence: a restart loses everything."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._answers, timeout=10, message="redis to answer")
        return self

    def _answers(self) -> bool:
        import redis

        try:
            return redis.Redis.from_url(self.url, socket_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed: run the tests with `make test` (it installs it)")
    redis = Redis(tmp_path / "redis").start()
    yield redis
    redis.kill()


@pytest.fixture
def broker_at(settings):
    """Points this process's Celery app at another broker (and back afterwards)."""
    from mpanel.celery import app

    previous = (app.conf.broker_url, app.conf.task_default_queue)

    def reset_pools():
        app._pool = None  # the connection and producer pools are bound to the old URL
        app.amqp._producer_pool = None

    def point(url: str, queue: str) -> None:
        app.conf.broker_url = url
        app.conf.task_default_queue = queue
        reset_pools()
        settings.MPANEL_JOBS_EAGER = False

    yield point
    app.conf.broker_url, app.conf.task_default_queue = previous
    reset_pools()


@pytest.mark.worker
def test_jobs_in_flight_survive_a_redis_restart(transactional_db, own_redis, broker_at, tenant_a, tmp_path, settings):
    queue = f"crash-{time.time_ns()}"
    broker_at(own_redis.url, queue)
    worker = TunedWorker(
        connection.settings_dict["NAME"], tmp_path / "worker.log", queue, env={"REDIS_URL": own_redis.url}
    ).start()
    try:
        keys = [f"redis-{i}" for i in range(5)]
        jobs = [
            services.job_enqueue(tenant=tenant_a.tenant, type="test.sleep", payload={"key": k, "seconds": 1})
            for k in keys
        ]
        # One job runs in the worker (concurrency 1), the others wait in Redis: then Redis dies.
        wait_for(lambda: JobCall.objects.count() >= 1, message="the first job to start")
        own_redis.kill()
        time.sleep(1)
        own_redis.start()  # empty: the queued and unacknowledged messages are gone

        # The sweeper sends again what was dispatched and is still PENDING past the grace.
        settings.MPANEL_JOB_PENDING_REDISPATCH = 2

        def all_done():
            services.sweep()
            return Job.all_tenants.filter(status=JobStatus.SUCCEEDED).count() == len(jobs)

        wait_for(all_done, timeout=90, interval=1.0, message="every job to succeed after the restart")
    finally:
        worker.stop()

    for job, key in zip(jobs, keys, strict=True):
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        assert JobEffect.objects.filter(key=key).count() == 1
        # Ended exactly once: one successful attempt, one "job.succeeded" audit event.
        assert JobAttempt.objects.filter(job_id=job.pk, outcome="succeeded").count() == 1
        assert AuditEvent.objects.filter(action="job.succeeded", object_id=str(job.pk)).count() == 1
    # The restart really hit the worker mid-flight: it lost the broker and connected again.
    log = worker.logfile.read_text(errors="replace")
    assert "Cannot connect to redis" in log or "Connection to broker lost" in log
    assert log.count("Connected to redis") >= 2


# --- the database connection dropped mid-request -------------------------------------------------


def _terminate(backend_pid: int) -> None:
    """Ends a backend from a connection of our own, as a restart or failover would."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [backend_pid])


@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_mid_request_is_a_clean_503_and_stores_nothing(tenant_a, monkeypatch, settings):
    node = web_node_in(tenant_a)
    client = client_for(tenant_a.owner, tenant_a.tenant)
    real_job = website_services._job
    dropped = []

    def slow_step(site, job_type, actor):
        # The site, its hostnames and its audit event are written (uncommitted) by now; the
        # connection dies before the job is stored.
        if not dropped:
            dropped.append(connection.connection.info.backend_pid)
            _terminate(dropped[0])
        return real_job(site, job_type, actor)

    monkeypatch.setattr(website_services, "_job", slow_step)
    body = {"primary_domain": "drop.example.com", "node": str(node.pk)}
    before = AuditEvent.objects.count()

    response = client.post(reverse("website-list"), body, format="json")

    assert dropped, "the request never reached the slow step"
    assert response.status_code == 503, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "unavailable"
    assert response["Retry-After"]
    connection.close()  # the test client keeps the broken connection (Django closes it after real requests)
    assert Website.all_tenants.count() == 0
    assert WebsiteDomain.all_tenants.count() == 0
    assert Job.all_tenants.count() == 0
    assert AuditEvent.objects.count() == before

    # The same request again goes through, on a new connection.
    response = client.post(reverse("website-list"), body, format="json")
    assert response.status_code == 201, response.content
    assert Website.all_tenants.count() == 1
    assert Job.all_tenants.filter(type="website.provision").count() == 1
