"""Issue 21: the job row's status indexes and the creator/actor indexes are partial, and every query that
needs one can still use it.

A job's claim and finish change its status, so PostgreSQL writes each of its indexes again on each of
them, except a partial index whose condition the new row does not meet. The open jobs (``status`` PENDING
or RUNNING: the sweeper's, the queue's) and the finished ones have an index each, so a job is in one of
them at a time; a job or an audit event without a creator or actor (the workers' and the system's, the
most written) is in no creator/actor index. A partial index serves only a query whose conditions imply
its own: these tests run the real queries (the sweeper, the console's sections, the admin's status
filter, a user's deletion) and read PostgreSQL's plan for each, with sequential scans off so that a plan
without the index shows the index cannot serve the query.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit import services as audit
from apps.audit.models import AuditEvent
from apps.console import selectors as console
from apps.jobs import services as jobs
from apps.jobs.models import OPEN_STATUSES, Job, JobStatus
from apps.tenancy.roles import Role
from tests.conftest import make_user

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's plans"),
]


def _indexes_used(sql: str) -> set[str]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found: set[str] = set()

    def walk(node: dict) -> None:
        if "Index Name" in node:
            found.add(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def _sql(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    return connection.ops.compose_sql(sql, params)


def _queries_on(table: str, captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if f'"{table}"' in q["sql"] and "SAVEPOINT" not in q["sql"]]


@pytest.fixture
def some_jobs(tenant_a):
    now = timezone.now()
    rows = [
        Job(tenant=tenant_a.tenant, type="noop", status=status, run_after=now, finished_at=finished)
        for status, finished in [
            (JobStatus.PENDING, None),
            (JobStatus.RUNNING, None),
            (JobStatus.SUCCEEDED, now),
            (JobStatus.FAILED, now),
            (JobStatus.CANCELLED, now),
        ]
        for _ in range(20)
    ]
    Job.all_tenants.bulk_create(rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    return rows


def test_the_sweeper_finds_stale_and_lost_jobs_through_the_open_jobs_index(some_jobs):
    with CaptureQueriesContext(connection) as captured:
        jobs.sweep()
    selects = [sql for sql in _queries_on("jobs_job", captured) if sql.startswith("SELECT")]
    assert len(selects) == 2  # the stale RUNNING jobs, the PENDING jobs whose message was lost
    for sql in selects:
        assert "jobs_job_open_idx" in _indexes_used(sql), sql


def test_the_console_counts_open_and_finished_jobs_through_both_indexes(some_jobs):
    with CaptureQueriesContext(connection) as captured:
        console._jobs(since=timezone.now() - timedelta(hours=24))
        console._failed_jobs(now=timezone.now())
    counted, failed = _queries_on("jobs_job", captured)
    assert {"jobs_job_open_idx", "jobs_job_finished_idx"} <= _indexes_used(counted)
    assert "jobs_job_finished_idx" in _indexes_used(failed)


@pytest.mark.parametrize("status", JobStatus.values)
def test_every_status_filter_across_tenants_has_an_index(some_jobs, status):
    sql = _sql(Job.all_tenants.filter(status__exact=status).order_by("-created_at"))
    expected = "jobs_job_open_idx" if status in OPEN_STATUSES else "jobs_job_finished_idx"
    assert expected in _indexes_used(sql)


def test_the_open_and_finished_indexes_hold_each_job_once(some_jobs):
    """What the partial conditions are for: a job is written into one of the two, never both."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indexrelid::regclass::text IN "
            "('jobs_job_open_idx', 'jobs_job_finished_idx') ORDER BY indexrelid::regclass::text"
        )
        finished, opened = (row[0] for row in cursor.fetchall())
    assert "WHERE" in finished and "'SUCCEEDED'" in finished and "'PENDING'" not in finished
    assert "WHERE" in opened and "'PENDING'" in opened and "'RUNNING'" in opened and "'SUCCEEDED'" not in opened


def test_deleting_a_user_clears_their_jobs_and_events_through_the_partial_indexes(tenant_a, some_jobs):
    user = make_user("leaving@example.test")
    job = Job.all_tenants.create(tenant=tenant_a.tenant, type="noop", created_by=user)
    event = audit.record(action="test.thing", tenant=tenant_a.tenant, actor=user)
    with CaptureQueriesContext(connection) as captured:
        user.delete()
    job.refresh_from_db()
    event.refresh_from_db()
    assert job.created_by_id is None and event.actor_id is None and event.actor_email == "leaving@example.test"
    cleared = {
        table: [sql for sql in _queries_on(table, captured) if sql.startswith("UPDATE")]
        for table in ("jobs_job", "audit_auditevent")
    }
    assert "jobs_job_created_by_idx" in _indexes_used(cleared["jobs_job"][0])
    assert "audit_event_actor_idx" in _indexes_used(cleared["audit_auditevent"][0])


def test_the_audit_trails_actor_filter_uses_the_actor_index(tenant_a):
    # A trail of other people's events, as a real one is, and its statistics read: on a nearly empty table
    # the planner may walk the created_at index instead whichever index is usable (CI saw it once).
    other = tenant_a.users[Role.ADMIN]
    audit.record_many([audit.build(action="test.other", tenant=tenant_a.tenant, actor=other) for _ in range(500)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditevent")
    sql = _sql(AuditEvent.objects.filter(actor=tenant_a.owner).order_by("-created_at"))
    assert "audit_event_actor_idx" in _indexes_used(sql)


@pytest.mark.django_db(transaction=True)  # sqlmigrate refuses CONCURRENTLY inside a test's transaction
@pytest.mark.parametrize(("app", "migration"), [("jobs", "0005"), ("audit", "0004")])
def test_the_new_indexes_of_the_busiest_tables_are_built_without_blocking_writes(app, migration):
    """A plain CREATE INDEX blocks every write of its table until it is built: on the audit trail (a write
    per mutation) and the jobs, a deploy would hold up the platform for as long as that takes."""
    out = io.StringIO()
    call_command("sqlmigrate", app, migration, stdout=out)
    statements = [line for line in out.getvalue().splitlines() if line.startswith("CREATE INDEX")]
    assert statements and all(line.startswith("CREATE INDEX CONCURRENTLY") for line in statements), statements
    assert "BEGIN;" not in out.getvalue()  # CONCURRENTLY cannot run in a transaction
