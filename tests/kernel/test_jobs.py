"""The job outbox in-process: enqueue on commit, run once, retry with backoff, sweep, API.

settings_test runs jobs eagerly (MPANEL_JOBS_EAGER): ``dispatch`` runs the job in the calling
process. Tests whose point is ``transaction.on_commit`` use ``transactional_db`` so that commits
and rollbacks are real; the others use ``db`` and run the captured on-commit callbacks.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from celery import current_app
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.jobs import registry, services, tasks
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from tests.conftest import make_user, operator_client_for
from tests.support.models import JobCall, JobEffect


class Boom(Exception):
    pass


def fresh(job: Job) -> Job:
    return Job.all_tenants.get(pk=job.pk)


def calls(key: str) -> int:
    return JobCall.objects.filter(key=key).count()


def effects(key: str) -> int:
    return JobEffect.objects.filter(key=key).count()


def attempt_log(job: Job) -> list[tuple[int, str]]:
    return list(JobAttempt.objects.filter(job_id=job.pk).order_by("number").values_list("number", "outcome"))


def make_job(fx, *, type: str = "test.record", key: str = "k", **fields) -> Job:
    """A job row written directly, as a lost message leaves it: nothing was ever sent."""
    with fx.scope():
        return Job.objects.create(type=type, payload={"key": key, **fields.pop("payload", {})}, **fields)


def make_running(fx, *, key: str, heartbeat_age: float, attempts: int = 1, max_attempts: int = 5) -> Job:
    """A job some worker claimed (attempt ``attempts`` open) and last heard of ``heartbeat_age`` s ago."""
    then = timezone.now() - timedelta(seconds=heartbeat_age)
    job = make_job(
        fx,
        key=key,
        status=JobStatus.RUNNING,
        attempts=attempts,
        max_attempts=max_attempts,
        dispatched_at=then,
        started_at=then,
        heartbeat_at=then,
    )
    JobAttempt.objects.create(job=job, number=attempts, started_at=then, worker="gone")
    return job


def make_due(job: Job) -> None:
    """Instead of sleeping through the backoff: move the retry time into the past."""
    Job.all_tenants.filter(pk=job.pk).update(run_after=timezone.now() - timedelta(seconds=1))


# --- enqueue, commit, run once ---------------------------------------------------------------------


def test_job_enqueued_in_a_rolled_back_transaction_never_runs(transactional_db, tenant_a):
    with pytest.raises(Boom), transaction.atomic():
        job = services.job_enqueue(tenant=tenant_a.tenant, type="test.record", payload={"key": "rolled-back"})
        assert calls("rolled-back") == 0  # not before the commit either
        raise Boom

    assert not Job.all_tenants.filter(pk=job.pk).exists()
    assert not AuditEvent.objects.filter(action="job.enqueue", object_id=str(job.pk)).exists()
    assert calls("rolled-back") == 0
    assert effects("rolled-back") == 0
    assert services.sweep() == {"recovered": 0, "failed": 0, "redispatched": 0}
    assert calls("rolled-back") == 0


def test_committed_job_runs_exactly_once_on_commit(transactional_db, tenant_a):
    with transaction.atomic():
        job = services.job_enqueue(tenant=tenant_a.tenant, type="test.record", payload={"key": "committed"})
        assert calls("committed") == 0, "a job must not run before its transaction commits"
        assert fresh(job).dispatched_at is None

    job = fresh(job)
    assert job.status == JobStatus.SUCCEEDED
    assert job.attempts == 1
    assert job.result == {"key": "committed", "created": True}
    assert job.dispatched_at is not None
    assert job.started_at is not None
    assert job.finished_at >= job.started_at
    assert job.last_error == ""
    assert calls("committed") == 1
    assert effects("committed") == 1
    attempt = JobAttempt.objects.get(job_id=job.pk)
    assert (attempt.number, attempt.outcome, attempt.error) == (1, "succeeded", "")
    assert attempt.finished_at is not None
    assert AuditEvent.objects.filter(action="job.succeeded", object_id=str(job.pk)).count() == 1
    # Nothing is left for the sweeper.
    assert services.sweep() == {"recovered": 0, "failed": 0, "redispatched": 0}
    assert calls("committed") == 1


def test_running_the_same_job_twice_has_one_effect(db, tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_enqueue(tenant=tenant_a.tenant, type="test.record", payload={"key": "twice"})
    assert fresh(job).status == JobStatus.SUCCEEDED

    # A duplicate delivery of the message, through the task and through the service.
    assert tasks.run(str(job.pk)) == "skipped"
    assert services.run_job(job.pk) == "skipped"

    job = fresh(job)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
    assert calls("twice") == 1
    assert effects("twice") == 1
    assert attempt_log(job) == [(1, "succeeded")]


def test_run_job_returns_what_happened(db, tenant_a):
    job = make_job(tenant_a, key="direct")
    assert services.run_job(job.pk) == "succeeded"
    assert services.run_job(job.pk) == "skipped"
    later = make_job(tenant_a, key="later", run_after=timezone.now() + timedelta(hours=1))
    assert services.run_job(later.pk) == "not_due"
    assert (fresh(later).status, fresh(later).attempts) == (JobStatus.PENDING, 0)
    assert services.run_job("00000000-0000-0000-0000-000000000000") == "busy"  # no such row
    assert calls("direct") == 1
    assert calls("later") == 0


def test_enqueue_with_the_same_key_returns_the_same_job(db, tenant_a, tenant_b):
    first = services.job_enqueue(tenant=tenant_a.tenant, type="test.record", payload={"key": "a"}, key="provision-1")
    again = services.job_enqueue(tenant=tenant_a.tenant, type="test.record", payload={"key": "b"}, key="provision-1")
    assert again.pk == first.pk
    assert again.payload == {"key": "a"}
    with tenant_a.scope():
        assert Job.objects.filter(idempotency_key="provision-1").count() == 1
    assert AuditEvent.objects.filter(action="job.enqueue", tenant=tenant_a.tenant).count() == 1

    # The key is per tenant: another tenant's job with the same key is another job.
    other = services.job_enqueue(tenant=tenant_b.tenant, type="test.record", payload={"key": "c"}, key="provision-1")
    assert other.pk != first.pk
    assert Job.all_tenants.filter(idempotency_key="provision-1").count() == 2


def test_enqueue_refuses_an_unknown_type(db, tenant_a):
    with pytest.raises(ValueError, match="No handler"):
        services.job_enqueue(tenant=tenant_a.tenant, type="test.nope")
    assert not Job.all_tenants.exists()


def test_enqueue_writes_an_audit_event(db, tenant_a):
    actor = tenant_a.users[Role.ADMIN]
    job = services.job_enqueue(
        tenant=tenant_a.tenant, type="test.record", payload={"key": "audited"}, actor=actor, obj=tenant_a.tenant
    )
    event = AuditEvent.objects.get(action="job.enqueue")
    assert event.tenant_id == tenant_a.tenant.pk
    assert (event.object_type, event.object_id) == ("jobs.job", str(job.pk))
    assert event.changes["type"] == [None, "test.record"]
    assert event.changes["payload"] == [None, {"key": "audited"}]
    job = fresh(job)
    assert job.created_by_id == actor.pk
    assert (job.object_type, job.object_id) == ("tenancy.tenant", str(tenant_a.tenant.pk))


# --- failures and retries --------------------------------------------------------------------------


def test_flaky_job_is_retried_with_backoff_until_it_fails(transactional_db, tenant_a, settings):
    settings.MPANEL_JOB_BACKOFF_SECONDS = 10
    job = services.job_enqueue(
        tenant=tenant_a.tenant,
        type="test.flaky",
        payload={"key": "flaky", "fail_times": 99},
        max_attempts=3,
    )

    # Attempt 1 failed: back to PENDING, due again after the backoff.
    job = fresh(job)
    assert (job.status, job.attempts) == (JobStatus.PENDING, 1)
    # A RuntimeError is no message for the tenant: they read a reference, the operator the detail.
    assert job.last_error.startswith(f"Internal error (reference {job.pk}#1)")
    assert "planned failure on attempt 1" in job.error_detail and "Traceback" in job.error_detail
    assert job.run_after > timezone.now()
    first = JobAttempt.objects.get(job_id=job.pk, number=1)
    assert first.outcome == "failed"
    assert first.error == job.last_error and "planned failure on attempt 1" in first.detail
    assert job.run_after - first.finished_at == timedelta(seconds=10)

    # Not due yet: the sweeper leaves it alone.
    assert services.sweep()["redispatched"] == 0
    assert (fresh(job).attempts, calls("flaky")) == (1, 1)

    # Due: the sweeper sends it again; the backoff doubles.
    make_due(job)
    assert services.sweep()["redispatched"] == 1
    job = fresh(job)
    assert (job.status, job.attempts) == (JobStatus.PENDING, 2)
    assert "planned failure on attempt 2" in job.error_detail and f"{job.pk}#2" in job.last_error
    second = JobAttempt.objects.get(job_id=job.pk, number=2)
    assert job.run_after - second.finished_at == timedelta(seconds=20)

    # The last attempt fails for good.
    make_due(job)
    assert services.sweep()["redispatched"] == 1
    job = fresh(job)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 3)
    assert "planned failure on attempt 3" in job.error_detail and f"{job.pk}#3" in job.last_error
    assert job.finished_at is not None
    assert attempt_log(job) == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert calls("flaky") == 3
    assert effects("flaky") == 0
    assert AuditEvent.objects.filter(action="job.failed", object_id=str(job.pk)).count() == 1

    make_due(job)
    assert services.sweep()["redispatched"] == 0
    assert calls("flaky") == 3


def test_flaky_job_succeeds_on_its_retry(transactional_db, tenant_a):
    job = services.job_enqueue(tenant=tenant_a.tenant, type="test.flaky", payload={"key": "once", "fail_times": 1})
    assert (fresh(job).status, fresh(job).attempts) == (JobStatus.PENDING, 1)
    make_due(job)
    assert services.sweep()["redispatched"] == 1
    job = fresh(job)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)
    assert attempt_log(job) == [(1, "failed"), (2, "succeeded")]
    assert (calls("once"), effects("once")) == (2, 1)


def test_permanent_error_fails_at_once_without_retry(transactional_db, tenant_a):
    job = services.job_enqueue(tenant=tenant_a.tenant, type="test.broken", payload={"key": "broken"})
    job = fresh(job)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert job.last_error == "this job can never succeed"
    assert job.finished_at is not None
    assert attempt_log(job) == [(1, "failed")]

    make_due(job)
    assert services.sweep() == {"recovered": 0, "failed": 0, "redispatched": 0}
    assert (fresh(job).status, fresh(job).attempts) == (JobStatus.FAILED, 1)


def test_job_of_a_type_without_handler_fails_at_once(db, tenant_a):
    job = make_job(tenant_a, type="test.unregistered", key="nohandler")
    assert registry.get("test.unregistered") is None
    assert services.run_job(job.pk) == "failed"
    job = fresh(job)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert "No handler" in job.last_error


def test_a_handler_registers_with_either_decorator_and_a_type_has_one_owner():
    def first(job):
        return "first"

    def second(job):
        return "second"

    try:
        assert registry.handler("test.registry.a")(first) is first
        registry.HANDLERS.register("test.registry.b")(second)
        assert registry.get("test.registry.a") is first and registry.get("test.registry.b") is second
        registry.handler("test.registry.a")(first)  # the same function again (a module imported twice)
        with pytest.raises(ImproperlyConfigured, match=r"job handler 'test\.registry\.a' is registered twice"):
            registry.handler("test.registry.a")(second)
    finally:
        registry.HANDLERS.unregister("test.registry.a")
        registry.HANDLERS.unregister("test.registry.b")


def test_the_services_send_the_run_task_by_its_registered_name():
    # services.dispatch looks the entry point up by name (the services do not import the tasks).
    assert current_app.tasks[services.RUN_TASK] is tasks.run._get_current_object()


# --- the sweeper -------------------------------------------------------------------------------------


def test_sweep_takes_back_a_running_job_whose_worker_died(transactional_db, tenant_a, settings):
    settings.MPANEL_JOB_HEARTBEAT_TIMEOUT = 60
    dead = make_running(tenant_a, key="dead", heartbeat_age=61)
    alive = make_running(tenant_a, key="alive", heartbeat_age=30)

    assert services.sweep() == {"recovered": 1, "failed": 0, "redispatched": 1}

    dead = fresh(dead)
    assert (dead.status, dead.attempts) == (JobStatus.SUCCEEDED, 2)
    assert attempt_log(dead) == [(1, "lost"), (2, "succeeded")]
    lost = JobAttempt.objects.get(job_id=dead.pk, number=1)
    assert lost.finished_at is not None
    assert "heartbeat" in lost.error
    assert (calls("dead"), effects("dead")) == (1, 1)

    # A job whose worker still beats is left alone.
    alive = fresh(alive)
    assert (alive.status, alive.attempts) == (JobStatus.RUNNING, 1)
    assert attempt_log(alive) == [(1, "")]
    assert calls("alive") == 0


def test_sweep_fails_a_lost_job_with_no_attempts_left(transactional_db, tenant_a, settings):
    settings.MPANEL_JOB_HEARTBEAT_TIMEOUT = 60
    job = make_running(tenant_a, key="last", heartbeat_age=61, attempts=3, max_attempts=3)

    assert services.sweep() == {"recovered": 0, "failed": 1, "redispatched": 0}

    job = fresh(job)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 3)
    assert "no attempts are left" in job.last_error
    assert job.finished_at is not None
    assert attempt_log(job) == [(3, "lost")]
    assert calls("last") == 0


def test_sweep_runs_a_pending_job_whose_message_was_lost(transactional_db, tenant_a, settings):
    settings.MPANEL_JOB_PENDING_REDISPATCH = 120
    now = timezone.now()
    never_sent = make_job(tenant_a, key="never-sent")
    assert never_sent.dispatched_at is None
    sent_long_ago = make_job(tenant_a, key="long-ago", dispatched_at=now - timedelta(seconds=121))
    just_sent = make_job(tenant_a, key="just-sent", dispatched_at=now)  # its message may still arrive
    not_due = make_job(tenant_a, key="not-due", run_after=now + timedelta(hours=1))

    assert services.sweep() == {"recovered": 0, "failed": 0, "redispatched": 2}

    for job, key in ((never_sent, "never-sent"), (sent_long_ago, "long-ago")):
        job = fresh(job)
        assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
        assert (calls(key), effects(key)) == (1, 1)
    for job, key in ((just_sent, "just-sent"), (not_due, "not-due")):
        assert (fresh(job).status, fresh(job).attempts) == (JobStatus.PENDING, 0)
        assert calls(key) == 0


def test_old_attempt_cannot_finish_a_job_the_sweeper_took_back(transactional_db, tenant_a, settings):
    settings.MPANEL_JOB_HEARTBEAT_TIMEOUT = 60
    job = make_running(tenant_a, key="taken-back", heartbeat_age=61)
    old = fresh(job)  # what the presumed-dead worker holds: attempt 1

    assert services.sweep()["recovered"] == 1
    assert (fresh(job).status, fresh(job).attempts) == (JobStatus.SUCCEEDED, 2)

    # The old worker was only slow; its late outcome, whatever it is, is dropped.
    assert services._finish(old, JobStatus.FAILED, error="late failure") == "superseded"
    assert services._finish(old, JobStatus.SUCCEEDED, result={"late": True}) == "superseded"
    assert services._finish(old, JobStatus.PENDING, error="late", retry_in=timedelta(seconds=5)) == "superseded"

    job = fresh(job)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)
    assert job.result == {"key": "taken-back", "created": True}
    assert job.last_error == ""
    # The history still says what the sweeper decided about attempt 1.
    assert attempt_log(job) == [(1, "lost"), (2, "succeeded")]
    assert AuditEvent.objects.filter(action="job.failed", object_id=str(job.pk)).count() == 0


def test_old_attempt_cannot_finish_while_the_new_attempt_runs(db, tenant_a):
    job = make_running(tenant_a, key="overlap", heartbeat_age=0, attempts=2)
    old = fresh(job)
    old.attempts = 1

    assert services._finish(old, JobStatus.SUCCEEDED, result={"late": True}) == "superseded"

    job = fresh(job)
    assert (job.status, job.attempts, job.finished_at) == (JobStatus.RUNNING, 2, None)
    assert job.result == {}


# --- claiming: SELECT … FOR UPDATE SKIP LOCKED -----------------------------------------------------


class HoldInOtherTransaction(threading.Thread):
    """Runs ``work`` in a transaction of another connection and keeps it open until released."""

    def __init__(self, work):
        super().__init__(daemon=True)
        self.work = work
        self.holding = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None

    def run(self):
        try:
            with transaction.atomic():
                self.work()
                self.holding.set()
                self.release.wait(timeout=30)
        except BaseException as exc:  # reported to the test
            self.error = exc
            self.holding.set()
        finally:
            connection.close()

    def __enter__(self):
        self.start()
        assert self.holding.wait(timeout=10)
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.join(timeout=10)


def test_a_job_another_worker_holds_is_skipped(transactional_db, tenant_a):
    job = make_job(tenant_a, key="held")
    with HoldInOtherTransaction(lambda: Job.all_tenants.select_for_update().get(pk=job.pk)):
        assert services.run_job(job.pk) == "busy"
    assert (fresh(job).status, fresh(job).attempts) == (JobStatus.PENDING, 0)
    assert services.run_job(job.pk) == "succeeded"
    assert calls("held") == 1


def test_a_change_to_the_tenant_does_not_make_its_jobs_busy(transactional_db, tenant_a):
    """Claiming must lock the job row only, not the tenant row it joins: a transaction that is
    updating the tenant (a rename, a suspension) must not make the tenant's jobs look taken."""
    job = make_job(tenant_a, key="claim-me")

    with HoldInOtherTransaction(lambda: Tenant.objects.filter(pk=tenant_a.tenant.pk).update(name="Renamed")):
        assert services.run_job(job.pk) == "succeeded"
    assert (fresh(job).status, fresh(job).attempts) == (JobStatus.SUCCEEDED, 1)
    assert calls("claim-me") == 1


# --- the API -----------------------------------------------------------------------------------------


def test_api_retry_of_a_failed_job_runs_it(db, tenant_a, api, django_capture_on_commit_callbacks):
    job = make_job(tenant_a, key="retry-me", status=JobStatus.FAILED, attempts=5, max_attempts=5)
    client = api(tenant_a.users[Role.ADMIN], tenant_a.tenant)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("job-retry", args=[job.pk]))

    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(job.pk)
    assert response.json()["status"] == JobStatus.PENDING
    job = fresh(job)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 6)
    assert job.max_attempts > job.attempts
    assert (calls("retry-me"), effects("retry-me")) == (1, 1)
    assert AuditEvent.objects.filter(action="job.retry", object_id=str(job.pk)).count() == 1


def test_api_retry_of_a_succeeded_job_is_a_conflict(db, tenant_a, api):
    job = make_job(tenant_a, key="done", status=JobStatus.SUCCEEDED, attempts=1)
    response = api(tenant_a.users[Role.ADMIN], tenant_a.tenant).post(reverse("job-retry", args=[job.pk]))
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "conflict"
    assert (fresh(job).status, fresh(job).attempts) == (JobStatus.SUCCEEDED, 1)
    assert calls("done") == 0


def test_api_cancel_of_a_pending_job(db, tenant_a, api):
    job = make_job(tenant_a, key="cancel-me")
    response = api(tenant_a.users[Role.ADMIN], tenant_a.tenant).post(reverse("job-cancel", args=[job.pk]))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == JobStatus.CANCELLED
    job = fresh(job)
    assert job.status == JobStatus.CANCELLED
    assert job.finished_at is not None
    assert AuditEvent.objects.filter(action="job.cancel", object_id=str(job.pk)).count() == 1
    # Its message may still arrive, and the sweeper still runs: neither runs it.
    assert services.run_job(job.pk) == "skipped"
    assert services.sweep()["redispatched"] == 0
    assert calls("cancel-me") == 0


@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED])
def test_api_cancel_of_a_job_that_is_not_pending_is_a_conflict(db, tenant_a, api, status):
    job = make_job(tenant_a, key="busy", status=status, attempts=1, heartbeat_at=timezone.now())
    response = api(tenant_a.users[Role.ADMIN], tenant_a.tenant).post(reverse("job-cancel", args=[job.pk]))
    assert response.status_code == 409, response.content
    assert fresh(job).status == status


def test_api_retry_and_cancel_need_admin_of_the_same_tenant(db, tenant_a, tenant_b, api):
    job = make_job(tenant_a, key="guarded", status=JobStatus.FAILED, attempts=1)
    member = api(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    assert member.post(reverse("job-retry", args=[job.pk])).status_code == 403
    stranger = api(tenant_b.users[Role.OWNER], tenant_b.tenant)
    assert stranger.post(reverse("job-retry", args=[job.pk])).status_code == 404
    assert stranger.post(reverse("job-cancel", args=[job.pk])).status_code == 404
    assert (fresh(job).status, fresh(job).attempts) == (JobStatus.FAILED, 1)


def test_api_operator_sees_every_tenant_and_admin_only_their_own(db, tenant_a, tenant_b, api):
    a_failed = make_job(tenant_a, key="a1", status=JobStatus.FAILED, attempts=1)
    a_done = make_job(tenant_a, key="a2", status=JobStatus.SUCCEEDED, attempts=1)
    b_failed = make_job(tenant_b, key="b1", status=JobStatus.FAILED, attempts=1)
    url = reverse("job-list")

    operator = operator_client_for(make_user("operator@platform.test", is_staff=True))  # no X-Tenant-ID
    body = operator.get(url).json()
    assert body["count"] == 3
    assert {row["id"] for row in body["results"]} == {str(a_failed.pk), str(a_done.pk), str(b_failed.pk)}
    assert {row["tenant"] for row in body["results"]} == {str(tenant_a.tenant.pk), str(tenant_b.tenant.pk)}
    failed = operator.get(url, {"status": "FAILED"}).json()
    assert {row["id"] for row in failed["results"]} == {str(a_failed.pk), str(b_failed.pk)}
    assert operator.get(reverse("job-detail", args=[b_failed.pk])).status_code == 200

    admin = api(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    body = admin.get(url).json()
    assert {row["id"] for row in body["results"]} == {str(a_failed.pk), str(a_done.pk)}
    failed = admin.get(url, {"status": "FAILED"}).json()
    assert [row["id"] for row in failed["results"]] == [str(a_failed.pk)]
    assert admin.get(reverse("job-detail", args=[b_failed.pk])).status_code == 404
    detail = admin.get(reverse("job-detail", args=[a_failed.pk])).json()
    assert detail["status"] == JobStatus.FAILED
    assert detail["attempt_log"] == []

    # A staff user who names a tenant acts in it like anyone else (and must belong to it).
    assert api(make_user("op2@platform.test", is_staff=True), tenant_b.tenant).get(url).status_code == 404
