"""The outbox's one-statement writes (PostgreSQL, apps/jobs/statements.py) against the path used elsewhere
(SQLite: the ORM's enqueue, the plain claim and finish; tests/kernel/test_jobs_sqlite.py runs it on SQLite).

The same jobs go through both paths on the same database: the job rows, attempt rows and audit events
they leave must be the same, field by field (ids and times aside), for each way a job ends. The statement
counts of the fast path are pinned here too.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.common import context
from apps.jobs import services
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.tenancy.roles import Role
from apps.tenancy.scoping import ScopeError, tenant_scope

TIMES = {"id", "created_at", "updated_at", "run_after", "dispatched_at", "started_at", "heartbeat_at", "finished_at"}


@pytest.fixture(autouse=True)
def _postgresql(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement path is PostgreSQL's; SQLite runs the ORM path only")


def generic(monkeypatch) -> None:
    monkeypatch.setattr(services, "one_statement", lambda: False)


def job_row(job_id) -> dict[str, Any]:
    row = Job.all_tenants.filter(pk=job_id).values().get()
    assert row["created_at"] and row["updated_at"]
    times = {k: row[k] is not None for k in TIMES if k != "id"}
    return {**{k: v for k, v in row.items() if k not in TIMES}, "times_set": times}


def attempts(job_id) -> list[dict[str, Any]]:
    rows = JobAttempt.objects.filter(job_id=job_id).order_by("number").values()
    return [{k: v for k, v in r.items() if k not in ("id", "job_id", "started_at", "finished_at")}
            | {"finished": r["finished_at"] is not None} for r in rows]  # fmt: skip


def events(job_id) -> list[dict[str, Any]]:
    rows = AuditEvent.objects.filter(object_id=str(job_id)).order_by("created_at", "action").values()
    return [{k: v for k, v in r.items() if k not in ("id", "created_at", "object_id")} for r in rows]


def trail(job_id) -> tuple:
    return job_row(job_id), attempts(job_id), events(job_id)


def both(monkeypatch, make) -> tuple[tuple, tuple]:
    """``make(key)`` once on the fast path and once on the ORM path: what each left. Each run has its own
    ``key`` (the test handlers' effect is per key), shown as "KEY", and the job's id (in error references)
    as "JOB"; outside a request each event has a
    request id of its own, shown as whether it is set."""

    def seen(job_id, key: str) -> tuple:
        text = json.dumps(trail(job_id), cls=DjangoJSONEncoder)
        left = json.loads(text.replace(key, "KEY").replace(str(job_id), "JOB"))
        for event in left[2]:
            if event["via"] == "system":
                event["request_id"] = bool(event["request_id"])
        return left

    fast = seen(make("fast-key"), "fast-key")
    with monkeypatch.context() as m:
        generic(m)
        slow = seen(make("orm-key"), "orm-key")
    return fast, slow


def test_enqueue_writes_the_same_row_and_event(monkeypatch, tenant_a, settings):
    settings.MPANEL_JOBS_EAGER = False  # stays PENDING (the message goes to the broker, nobody reads it)
    admin = tenant_a.users[Role.ADMIN]

    def make(key):
        token = context.activate(context.RequestContext(actor=admin, via="api", request_id="req-1", ip="192.0.2.7"))
        try:
            job = services.job_enqueue(
                tenant=tenant_a.tenant, type="test.record", payload={"key": key, "n": [1, 2]}, actor=admin,
                obj=tenant_a.tenant, max_attempts=3,
            )  # fmt: skip
        finally:
            context.reset(token)
        assert Job.all_tenants.get(pk=job.pk).created_at == job.created_at  # the returned row is the stored row
        return job.pk

    fast, slow = both(monkeypatch, make)
    assert fast == slow
    row, _attempts, (event,) = fast
    assert row["status"] == JobStatus.PENDING and str(row["created_by_id"]) == str(admin.pk)
    assert event["action"] == "job.enqueue" and event["ip"] == "192.0.2.7" and str(event["actor_id"]) == str(admin.pk)


@pytest.mark.parametrize(
    "type, payload, outcome",
    [
        ("test.record", {}, "succeeded"),
        ("test.broken", {}, "failed"),  # PermanentError: failed at once, the tenant's message redacted
        ("test.flaky", {"fail_times": 1}, "pending"),  # retried with backoff: no audit event, no finish
        ("test.flaky", {"fail_times": 9}, "failed"),  # the last attempt fails
    ],
)
def test_a_run_leaves_the_same_rows(monkeypatch, tenant_a, settings, type, payload, outcome):
    settings.MPANEL_JOBS_EAGER = False

    def make(key):
        job = services.job_enqueue(
            tenant=tenant_a.tenant, type=type, payload={"key": key, **payload},
            max_attempts=1 if payload.get("fail_times") == 9 else 5,
        )  # fmt: skip
        assert services.run_job(job.pk) == outcome
        return job.pk

    fast, slow = both(monkeypatch, make)
    assert fast == slow
    row, attempt_rows, event_rows = fast
    assert row["status"] == outcome.upper()
    assert [a["outcome"] for a in attempt_rows] == ["succeeded" if outcome == "succeeded" else "failed"]
    expected = ["job.enqueue"] + ([] if outcome == "pending" else [f"job.{outcome}"])
    assert sorted(e["action"] for e in event_rows) == sorted(expected)


def test_a_superseded_finish_writes_nothing_on_either_path(monkeypatch, tenant_a, settings):
    settings.MPANEL_JOBS_EAGER = False

    def make(key):
        job = services.job_enqueue(tenant=tenant_a.tenant, type="test.record", payload={"key": key})
        claimed = services._claim(job.pk, timezone.now())
        # The sweeper took it back (its worker presumed dead) and closed the attempt as lost.
        JobAttempt.objects.filter(job_id=job.pk).update(finished_at=timezone.now(), outcome="lost")
        Job.all_tenants.filter(pk=job.pk).update(status=JobStatus.PENDING, run_after=timezone.now() + timedelta(1))
        assert services._finish(claimed, JobStatus.SUCCEEDED, result={"late": True}) == "superseded"
        assert services._finish(claimed, JobStatus.PENDING, error="x", retry_in=timedelta(seconds=1)) == "superseded"
        return job.pk

    fast, slow = both(monkeypatch, make)
    assert fast == slow
    assert fast[0]["status"] == JobStatus.PENDING and fast[0]["result"] == {}
    assert [a["outcome"] for a in fast[1]] == ["lost"]
    assert [e["action"] for e in fast[2]] == ["job.enqueue"]


def test_the_claim_reads_back_the_job_and_its_tenant_as_the_orm_does(tenant_a, settings):
    settings.MPANEL_JOBS_EAGER = False
    job = services.job_enqueue(tenant=tenant_a.tenant, type="test.record", payload={"key": "c", "deep": {"a": [1]}})
    claimed = services._claim(job.pk, timezone.now())
    stored = Job.all_tenants.select_related("tenant").get(pk=job.pk)
    fields = [f.attname for f in Job._meta.concrete_fields]
    assert {f: getattr(claimed, f) for f in fields} == {f: getattr(stored, f) for f in fields}
    tenant_fields = [f.attname for f in type(stored.tenant)._meta.concrete_fields]
    assert {f: getattr(claimed.tenant, f) for f in tenant_fields} == {
        f: getattr(stored.tenant, f) for f in tenant_fields
    }
    assert claimed._state.adding is False and claimed.tenant._state.adding is False
    assert services._claim(job.pk, timezone.now()) is None  # RUNNING now: nothing to claim
    assert services._claim("not-a-uuid", timezone.now()) is None


def test_enqueue_keeps_the_tenant_scope_checks(monkeypatch, tenant_a, tenant_b, settings):
    settings.MPANEL_JOBS_EAGER = False
    for path in ("fast", "orm"):
        with monkeypatch.context() as m:
            if path == "orm":
                generic(m)
            with tenant_scope(tenant_b.tenant), pytest.raises(ScopeError):
                services.job_enqueue(tenant=tenant_a.tenant, type="test.record", payload={"key": path})
            with tenant_scope(tenant_b.tenant):
                job = services.job_enqueue(tenant=None, type="test.record", payload={"key": path})
            assert Job.all_tenants.get(pk=job.pk).tenant_id == tenant_b.tenant.pk
            assert AuditEvent.objects.get(object_id=str(job.pk)).tenant_id is None  # as the event was recorded
    assert not Job.all_tenants.filter(tenant=tenant_a.tenant).exists()


def test_statements_per_job_on_postgresql(tenant_a, settings):
    """Enqueue: one statement (was BEGIN, two INSERTs, COMMIT). Worker: the claim and the finish (was seven)."""
    settings.MPANEL_JOBS_EAGER = False
    with CaptureQueriesContext(connection) as enqueue:
        job = services.job_enqueue(tenant=tenant_a.tenant, type="test.record", payload={"key": "q"})
    assert len(enqueue.captured_queries) == 1, [q["sql"][:80] for q in enqueue.captured_queries]
    with CaptureQueriesContext(connection) as run:
        assert services.run_job(job.pk) == "succeeded"
    # The handler's own statements (test.record: an INSERT and a get_or_create) aside.
    ours = [q["sql"] for q in run.captured_queries if "jobs_job" in q["sql"]]
    assert len(ours) == 2, ours
