"""The job outbox against a real Celery worker (prefork) on Redis and PostgreSQL.

Every job goes through the broker here: the ``celery_worker`` fixture turns eager mode off in
this process and starts a worker process on the test database with a queue of its own.
"""

from __future__ import annotations

import re
from datetime import timedelta
from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone

from apps.jobs import services, tasks
from apps.jobs.models import Job, JobAttempt, JobStatus
from tests import conftest
from tests.conftest import Worker, wait_for
from tests.support.models import JobCall, JobEffect

pytestmark = pytest.mark.worker

TIMEOUT = 20.0


class Boom(Exception):
    pass


class TunedWorker(Worker):
    """A ``Worker`` whose process gets extra environment (its own settings, e.g. the heartbeat)."""

    def __init__(self, *args, env: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_env = env

    def start(self) -> Worker:
        base = conftest._worker_env
        with mock.patch.object(conftest, "_worker_env", lambda db, queue: {**base(db, queue), **self.extra_env}):
            return super().start()


@pytest.fixture
def another_worker(celery_worker, tmp_path):
    """Starts more workers on the same database and queue; stops them before the database is flushed."""
    started: list[Worker] = []

    def start(env: dict[str, str] | None = None) -> Worker:
        logfile = tmp_path / f"worker-{len(started) + 2}.log"
        worker = TunedWorker(celery_worker.db_name, logfile, celery_worker.queue, env=env or {})
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


def status_of(job: Job) -> tuple[str, int]:
    return tuple(Job.all_tenants.filter(pk=job.pk).values_list("status", "attempts").get())


def wait_for_status(job: Job, status: str, timeout: float = TIMEOUT) -> Job:
    wait_for(lambda: status_of(job)[0] == status, timeout=timeout, message=f"job {job.pk} to be {status}")
    return Job.all_tenants.get(pk=job.pk)


def calls(key: str) -> int:
    return JobCall.objects.filter(key=key).count()


def effects(key: str) -> int:
    return JobEffect.objects.filter(key=key).count()


def attempt_log(job: Job) -> list[tuple[int, str]]:
    return list(JobAttempt.objects.filter(job_id=job.pk).order_by("number").values_list("number", "outcome"))


def task_outcome(worker: Worker, task_id: str, timeout: float = TIMEOUT) -> str:
    """What the worker's ``jobs.run`` returned for one message, read from its log."""
    pattern = re.compile(rf"jobs\.run\[{re.escape(task_id)}\] succeeded in [^:]+: '(\w+)'")

    def find():
        match = pattern.search(worker.logfile.read_text(errors="replace"))
        return match.group(1) if match else None

    return wait_for(find, timeout=timeout, message=f"the worker to finish task {task_id}")


def enqueue(fx, key: str, type: str = "test.record", **payload) -> Job:
    return services.job_enqueue(tenant=fx.tenant, type=type, payload={"key": key, **payload})


def test_worker_runs_a_committed_job_exactly_once(celery_worker, tenant_a):
    with transaction.atomic():
        job = enqueue(tenant_a, "committed")
    job = wait_for_status(job, JobStatus.SUCCEEDED)

    assert job.attempts == 1
    assert job.result == {"key": "committed", "created": True}
    assert attempt_log(job) == [(1, "succeeded")]
    assert JobAttempt.objects.get(job_id=job.pk).worker != ""
    assert (calls("committed"), effects("committed")) == (1, 1)


def test_worker_keeps_its_database_connection_and_replaces_a_dead_one(celery_worker, tenant_a):
    """Celery's Django fixup would reconnect for every task; ours reuses the connection (CONN_MAX_AGE)
    and, like a request, checks it first: a connection killed between jobs is replaced, no job lost."""
    from django.db import connection

    pids = [wait_for_status(enqueue(tenant_a, f"pid-{i}", type="test.backend"), JobStatus.SUCCEEDED).result["pid"]
            for i in range(3)]  # fmt: skip
    assert len(set(pids)) == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pids[0]])
    after = wait_for_status(enqueue(tenant_a, "pid-after", type="test.backend"), JobStatus.SUCCEEDED)
    assert after.attempts == 1 and after.result["pid"] != pids[0]


def test_job_of_a_rolled_back_transaction_never_reaches_the_worker(celery_worker, tenant_a):
    with pytest.raises(Boom), transaction.atomic():
        rolled_back = enqueue(tenant_a, "rolled-back")
        raise Boom
    # The worker takes messages in order (one process, prefetch 1): once a job sent after the
    # rolled-back one has run, a message for the rolled-back one would have run already.
    after = enqueue(tenant_a, "after")
    wait_for_status(after, JobStatus.SUCCEEDED)

    assert not Job.all_tenants.filter(pk=rolled_back.pk).exists()
    assert (calls("rolled-back"), effects("rolled-back")) == (0, 0)
    # This worker's queue is this test's own: the one message it ever received is the later job's.
    received = re.findall(r"Task jobs\.run\[[^\]]+\] received", celery_worker.logfile.read_text())
    assert len(received) == 1


def test_a_job_delivered_twice_has_one_effect(celery_worker, tenant_a):
    job = enqueue(tenant_a, "twice")
    wait_for_status(job, JobStatus.SUCCEEDED)

    duplicate = tasks.run.apply_async(args=[str(job.pk)])
    assert task_outcome(celery_worker, duplicate.id) == "skipped"

    assert status_of(job) == (JobStatus.SUCCEEDED, 1)
    assert (calls("twice"), effects("twice")) == (1, 1)
    assert attempt_log(job) == [(1, "succeeded")]


def test_both_deliveries_queued_before_the_job_ran_have_one_effect(celery_worker, tenant_a):
    with transaction.atomic():
        job = enqueue(tenant_a, "racing", type="test.sleep", seconds=0.5)
        # Sent in the same moment as the on-commit message, before either reached the worker.
        transaction.on_commit(lambda: tasks.run.apply_async(args=[str(job.pk)], task_id=f"dup-{job.pk}"))

    assert task_outcome(celery_worker, f"dup-{job.pk}") in ("skipped", "busy")
    job = wait_for_status(job, JobStatus.SUCCEEDED)
    assert job.attempts == 1
    assert (calls("racing"), effects("racing")) == (1, 1)


def test_killed_worker_job_is_recovered_by_the_sweeper(celery_worker, another_worker, tenant_a, settings):
    job = enqueue(tenant_a, "killed", type="test.sleep", seconds=4)
    wait_for(lambda: status_of(job)[0] == JobStatus.RUNNING and calls("killed") == 1, message="the job to start")

    celery_worker.kill()  # SIGKILL, main process and pool child: no clean shutdown, no ack
    assert status_of(job) == (JobStatus.RUNNING, 1)

    # The new worker beats every second and is presumed dead after 3 s of silence, like the sweeper
    # in this process: sweeping all along must take back the dead attempt only, never the live one.
    settings.MPANEL_JOB_HEARTBEAT_TIMEOUT = 3
    second = another_worker(env={"MPANEL_JOB_HEARTBEAT_TIMEOUT": "3"})
    swept = {"recovered": 0, "failed": 0, "redispatched": 0}

    def sweep_until_succeeded():
        for name, count in services.sweep().items():
            swept[name] += count
        return status_of(job)[0] == JobStatus.SUCCEEDED

    wait_for(sweep_until_succeeded, timeout=TIMEOUT, interval=0.5, message="the job to be recovered and run")

    job = Job.all_tenants.get(pk=job.pk)
    assert (swept["recovered"], swept["failed"]) == (1, 0)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)
    assert attempt_log(job) == [(1, "lost"), (2, "succeeded")]
    assert "heartbeat" in JobAttempt.objects.get(job_id=job.pk, number=1).error
    assert "'succeeded'" in second.logfile.read_text()  # run by the new worker
    assert calls("killed") == 2  # entered twice (idempotent handler) ...
    assert effects("killed") == 1  # ... with one effect


def test_lost_message_is_sent_again_by_the_sweeper(celery_worker, tenant_a):
    with tenant_a.scope():  # committed, but no message was ever sent
        job = Job.objects.create(type="test.record", payload={"key": "lost"})
    assert job.dispatched_at is None
    with tenant_a.scope():  # never sent either, but not due yet
        not_due = Job.objects.create(
            type="test.record", payload={"key": "not-due"}, run_after=timezone.now() + timedelta(hours=1)
        )

    assert services.sweep() == {"recovered": 0, "failed": 0, "redispatched": 1}
    job = wait_for_status(job, JobStatus.SUCCEEDED)

    assert job.attempts == 1
    assert job.dispatched_at is not None
    assert (calls("lost"), effects("lost")) == (1, 1)
    assert status_of(not_due) == (JobStatus.PENDING, 0)
    assert calls("not-due") == 0
    assert services.sweep()["redispatched"] == 0
