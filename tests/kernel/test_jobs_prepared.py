"""The outbox's statements prepared once per connection, and their values' shortcut (apps/jobs/statements.py).

Prepared (psycopg's server-side binding) or sent as plain statements (``MPANEL_DB_PREPARED_STATEMENTS =
False``), the same jobs leave the same rows; the values that skip a field's conversion are the values that
conversion returns.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.common.statements import insert_values
from apps.jobs import services, statements
from apps.jobs.models import Job, JobAttempt
from tests.kernel.test_jobs_statements import trail


@pytest.fixture(autouse=True)
def _postgresql(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's; SQLite runs the ORM path only")
    connection.close()  # a connection of its own: none of another test's statements prepared on it


def prepared_here() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


def run_one(tenant, type: str, key: str, **payload) -> str:
    job = services.job_enqueue(tenant=tenant, type=type, payload={"key": key, **payload})
    services.run_job(job.pk)
    return str(job.pk)


@pytest.mark.parametrize("type, payload", [("test.record", {}), ("test.broken", {}), ("test.flaky", {"fail_times": 1})])
def test_prepared_and_plain_statements_leave_the_same_rows(tenant_a, settings, type, payload):
    settings.MPANEL_JOBS_EAGER = False

    def seen(job_id: str, key: str):
        job, attempts, events = trail(job_id)
        text = repr((job, attempts, [{**e, "request_id": bool(e["request_id"])} for e in events]))
        return text.replace(key, "KEY").replace(job_id, "JOB")

    settings.MPANEL_DB_PREPARED_STATEMENTS = False
    plain = seen(run_one(tenant_a.tenant, type, "plain-key", **payload), "plain-key")
    assert not any("jobs_job" in s for s in prepared_here())
    settings.MPANEL_DB_PREPARED_STATEMENTS = True
    prepared = seen(run_one(tenant_a.tenant, type, "prepared-key", **payload), "prepared-key")
    assert prepared == plain
    # Enqueue, claim and finish: each kept by PostgreSQL for this connection, run again without parsing.
    assert len([s for s in prepared_here() if "jobs_job" in s]) == 3


def test_prepared_statements_are_logged_and_counted(tenant_a, settings):
    settings.MPANEL_JOBS_EAGER = False
    with CaptureQueriesContext(connection) as enqueue:
        services.job_enqueue(tenant=tenant_a.tenant, type="test.record", payload={"key": "log"})
    (query,) = enqueue.captured_queries
    assert query["sql"].startswith("WITH job AS (INSERT INTO") and "$1" in query["sql"]


def test_a_new_connection_prepares_them_again(tenant_a, settings):
    settings.MPANEL_JOBS_EAGER = False
    run_one(tenant_a.tenant, "test.record", "first")
    connection.close()  # as CONN_MAX_AGE or a dropped connection does: psycopg's cache goes with it
    assert services.run_job(services.job_enqueue(tenant=tenant_a.tenant, type="test.record",
                                                 payload={"key": "again"}).pk) == "succeeded"  # fmt: skip
    assert len([s for s in prepared_here() if "jobs_job" in s]) == 3


def sample_values(field) -> list:
    """Values of the kinds the outbox writes, and some it does not (each goes through ``get_db_prep_save``)."""
    return [None, "text", "", uuid.uuid4(), str(uuid.uuid4()), timezone.now(), datetime(2030, 1, 2, 3, 4),
            datetime(2030, 1, 2, tzinfo=UTC) + timedelta(hours=1), 7, {"a": [1]}, "192.0.2.7"]  # fmt: skip


@pytest.mark.filterwarnings("ignore:DateTimeField .* received a naive datetime:RuntimeWarning")
@pytest.mark.parametrize("model", [Job, JobAttempt, AuditEvent])
def test_values_that_skip_a_fields_conversion_are_what_it_returns(model):
    for field in model._meta.concrete_fields:
        for value in sample_values(field):
            try:
                expected = field.get_db_prep_save(value, connection)
            except Exception as exc:  # a value this field refuses: refused the same way
                with pytest.raises(type(exc)):
                    statements._prep(model, field.name, value, connection)
                continue
            got = statements._prep(model, field.name, value, connection)
            assert type(got) is type(expected) and repr(got) == repr(expected), (model, field.name, value)


def test_insert_values_are_the_orms(tenant_a):
    job = Job(tenant=tenant_a.tenant, type="test.record", payload={"n": 1}, last_error="Traceback: x")
    event = AuditEvent(tenant_id=tenant_a.tenant.pk, action="job.enqueue", object_id="x", changes={"a": 1})
    for obj in (job, event):
        _columns, values = insert_values(obj)
        # The values as set on the object (auto_now ones by _insert_values), through each field's conversion.
        orm = [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in obj._meta.concrete_fields]
        assert [(type(v), repr(v)) for v in values] == [(type(v), repr(v)) for v in orm]


def test_the_connections_other_statements_are_not_prepared(tenant_a, settings):
    settings.MPANEL_JOBS_EAGER = False
    run_one(tenant_a.tenant, "test.record", "others")
    assert connection.connection.prepare_threshold is None  # Django's setting, as it was
    for _ in range(10):
        Job.all_tenants.filter(tenant=tenant_a.tenant).count()
    assert not any("COUNT(*)" in s for s in prepared_here())
