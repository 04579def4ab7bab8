"""The job outbox's writes as one PostgreSQL statement each, and elsewhere (SQLite, the embedded
default) as their plain statements in one transaction (``claim_plain``, ``finish_plain``).

A job's life is a handful of writes that must land together: the job row and its audit event when it is
enqueued; the job, its attempt row and its audit event when it finishes. Through the ORM each is a
statement of its own inside BEGIN … COMMIT, one round trip each; here each group is one statement
with data-modifying CTEs, which PostgreSQL runs atomically (one snapshot, one transaction when no
transaction is open), so the audit event still commits or rolls back with the change it records.

Values go through each field's ``pre_save``/``get_db_prep_save`` (defaults, ``auto_now``, the redaction of
``TenantErrorField``, JSON adaptation) and rows read back through each field's converters, so a row
written or read here is the row the ORM would write or read (tests/kernel/test_jobs_statements.py
compares the two paths on the same jobs).

Each statement is prepared once per connection (``_cursor``): PostgreSQL then parses and plans it once, not
for every job (the claim's and the finish's planning cost as much as running them), and the values are
sent beside it rather than quoted into its text by the client.

SQLite has no data-modifying CTEs: there each group is its plain statements in one transaction (its
``BEGIN IMMEDIATE`` holds the database's write lock from the start: no row lock to take, nothing to
skip), their text made once per process instead of the ORM building and compiling each for every job
(half of an in-process job's Python). The same tests compare them with the one-statement path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.backends.postgresql.base import ServerBindingCursor

from apps.audit.models import AuditEvent
from apps.common.prepared import as_uuid
from apps.common.statements import (
    assignments,
    default_db,
    insert_sql,
    insert_values,
    model_columns,
    quote_name,
    unchanged,
)
from apps.tenancy.models import Tenant

from .models import Job, JobAttempt, JobStatus


class _PreparedCursor(ServerBindingCursor):
    """A cursor of psycopg's server-side binding whose statements are prepared (on first use, per connection)."""

    def execute(self, query, params=None, *, prepare=None, binary=None):  # type: ignore[override]
        # psycopg prepares nothing while its connection's ``prepare_threshold`` is None (Django's default,
        # for connection poolers that lose prepared statements). It is set only while this statement
        # runs (to a count never reached: nothing else is prepared automatically), so the connection's
        # other statements (Django's, ``ClientCursor``) are neither counted nor prepared, as before.
        threshold = self.connection.prepare_threshold
        if threshold is None:
            self.connection.prepare_threshold = _NEVER_AUTOMATICALLY
        try:
            return super().execute(query, params, prepare=True, binary=binary)
        finally:
            self.connection.prepare_threshold = threshold

    def _convert_query(self, query, params=None):
        # Kept for Django's query log (``last_executed_query`` reads it; psycopg keeps it only for a
        # statement it does not prepare): the statement with its $n placeholders.
        self._query = pgq = super()._convert_query(query, params)
        return pgq


_NEVER_AUTOMATICALLY = 2**31


@contextmanager
def _cursor() -> Iterator[Any]:
    """The outbox's cursor: Django's wrapper (query logging and counting, ``execute_wrappers``, the
    database errors as ``django.db`` errors, the health check) around a prepared-statement cursor.

    ``MPANEL_DB_PREPARED_STATEMENTS = False`` (for a connection pooler that cannot keep protocol-level
    prepared statements: PgBouncer before 1.21 in transaction mode) sends them as plain statements.
    """
    db = default_db()
    if not settings.MPANEL_DB_PREPARED_STATEMENTS:
        with db.cursor() as cursor:
            yield cursor
        return
    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        cursor = db._prepare_cursor(_PreparedCursor(db.connection))
    with cursor:
        yield cursor


def _field(model: type[models.Model], name: str) -> models.Field:
    return model._meta.get_field(name)


def _prep(model: type[models.Model], name: str, value: Any, db: Any) -> Any:
    """``value`` as an UPDATE of the ORM would send it for ``model.name``."""
    field = _field(model, name)
    same = unchanged(field, db.vendor)
    if same is not None and same(value):
        return value
    return field.get_db_prep_save(value, db)


def _cast(field: models.Field) -> str:
    # A SELECT list's literals have no column to take their type from: each is cast. Character columns
    # are cast to text and converted on assignment, so a value too long still fails as the ORM's would
    # (an explicit cast to varchar(n) would cut it silently).
    db_type = field.cast_db_type(connection) or "text"
    return "text" if db_type.startswith("varchar") else db_type


@cache
def _converters(model: type[models.Model]) -> tuple[list[str], list[tuple[Any, list]]]:
    """The attnames of ``model``'s concrete fields and, per field, its column and the converters a queryset
    applies to it (worked out once per process: the same for every row)."""
    out = []
    for field in model._meta.concrete_fields:
        col = field.get_col(model._meta.db_table)
        out.append((col, connection.ops.get_db_converters(col) + col.get_db_converters(connection)))
    return [f.attname for f in model._meta.concrete_fields], out


def _from_row(model: type[models.Model], row: tuple | list) -> models.Model:
    """A model instance from its concrete columns in order, through the converters a queryset applies."""
    db = default_db()
    attnames, converters = _converters(model)
    values = []
    for (col, convert_all), value in zip(converters, row, strict=True):
        for convert in convert_all:
            value = convert(value, col, db)
        values.append(value)
    return model.from_db(db.alias, attnames, values)


# --- enqueue ----------------------------------------------------------------------------------------------


def insert_job_and_event(job: Job, event: AuditEvent) -> None:
    """INSERT the new ``job`` and its ``job.enqueue`` event in one statement (was BEGIN, two INSERTs, COMMIT)."""
    _job_columns, job_values = insert_values(job)
    _event_columns, event_values = insert_values(event)
    with _cursor() as cursor:
        cursor.execute(_enqueue_sql(), [*job_values, *event_values])


@cache
def _enqueue_sql() -> str:
    job_columns, event_columns = model_columns(Job), model_columns(AuditEvent)
    return (
        f"WITH job AS (INSERT INTO {quote_name(Job._meta.db_table)} ({', '.join(job_columns)}) "  # noqa: S608 (our tables, columns)
        f"VALUES ({', '.join(['%s'] * len(job_columns))})) "
        f"INSERT INTO {quote_name(AuditEvent._meta.db_table)} ({', '.join(event_columns)}) "
        f"VALUES ({', '.join(['%s'] * len(event_columns))})"
    )


# --- claim ------------------------------------------------------------------------------------------------

# The row locked (SKIP LOCKED: held elsewhere, not claimed) and moved to RUNNING only while PENDING and due,
# its attempt row written, and the claimed row read back with its tenant: one statement instead of BEGIN,
# SELECT … FOR UPDATE, UPDATE, INSERT, COMMIT and a SELECT of the job with its tenant.
_CLAIM_SQL = """
WITH claimed AS (
    UPDATE {job} SET status = %(running)s, attempts = attempts + 1, started_at = %(now)s,
           heartbeat_at = %(now)s, updated_at = %(now)s
     WHERE id = (SELECT id FROM {job} WHERE id = %(id)s AND status = %(pending)s AND run_after <= %(now)s
                 FOR UPDATE SKIP LOCKED)
 RETURNING *
), attempt AS (
    INSERT INTO {attempt} (job_id, number, started_at, finished_at, outcome, error, detail, worker)
    SELECT id, attempts, %(now)s, NULL, '', '', '', %(worker)s FROM claimed
)
SELECT {job_columns}, {tenant_columns} FROM claimed JOIN {tenant} ON {tenant}.id = claimed.tenant_id
"""


@cache
def _claim_sql() -> str:
    job_fields, tenant_fields = Job._meta.concrete_fields, Tenant._meta.concrete_fields
    return _CLAIM_SQL.format(
        job=quote_name(Job._meta.db_table),
        attempt=quote_name(JobAttempt._meta.db_table),
        tenant=quote_name(Tenant._meta.db_table),
        job_columns=", ".join(f"claimed.{quote_name(f.column)}" for f in job_fields),
        tenant_columns=", ".join(f"{quote_name(Tenant._meta.db_table)}.{quote_name(f.column)}" for f in tenant_fields),
    )


def claim(job_id, now, worker: str) -> Job | None:
    """Claim the PENDING, due job ``job_id`` (a UUID): the claimed job with its tenant, or None."""
    sql = _claim_sql()
    params = {"id": job_id, "now": now, "running": JobStatus.RUNNING, "pending": JobStatus.PENDING, "worker": worker}
    with _cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(Job._meta.concrete_fields)
    job = _from_row(Job, row[:split])
    job.tenant = _from_row(Tenant, row[split:])
    return job


# --- finish -----------------------------------------------------------------------------------------------


@cache
def _event_sql(columns: tuple[str, ...]) -> str:
    casts = ", ".join(f"%s::{_cast(f)}" for f in AuditEvent._meta.concrete_fields)
    table = quote_name(AuditEvent._meta.db_table)
    return f", event AS (INSERT INTO {table} ({', '.join(columns)}) SELECT {casts} FROM won)"  # noqa: S608


def finish(job: Job, fields: dict[str, Any], attempt: dict[str, Any], event: AuditEvent | None) -> bool:
    """The outcome of ``job``'s attempt in one statement (was BEGIN, two UPDATEs, the audit INSERT, COMMIT).

    ``fields`` are written to the job only while this attempt holds it (RUNNING, the same attempt
    number); ``attempt`` to the attempt row only while it is open; ``event`` is inserted only if the job
    row was written. Answers whether it was (False: the sweeper took the job back, the outcome is dropped).
    """
    db = default_db()
    params: list[Any] = [_prep(Job, name, value, db) for name, value in fields.items()]
    params += [job.pk, JobStatus.RUNNING, job.attempts]
    params += [_prep(JobAttempt, name, value, db) for name, value in attempt.items()]
    params += [job.pk, job.attempts]
    if event is not None:
        params += insert_values(event)[1]
    with _cursor() as cursor:
        cursor.execute(_finish_sql(tuple(fields), tuple(attempt), event is not None), params)
        return bool(cursor.fetchone()[0])


@cache
def _finish_sql(fields: tuple[str, ...], attempt: tuple[str, ...], event: bool) -> str:
    """``finish``'s statement for the names it writes (a handful of shapes: success, retry, failure)."""
    job_table, attempt_table = quote_name(Job._meta.db_table), quote_name(JobAttempt._meta.db_table)
    sets, attempt_sets = assignments(Job, fields), assignments(JobAttempt, attempt)
    sql = (
        f"WITH won AS (UPDATE {job_table} SET {sets} WHERE id = %s AND status = %s AND attempts = %s "  # noqa: S608
        f"RETURNING id), "
        f"attempt AS (UPDATE {attempt_table} SET {attempt_sets} "
        f"WHERE job_id = %s AND number = %s AND finished_at IS NULL)"
    )
    if event:
        sql += _event_sql(tuple(model_columns(AuditEvent)))
    sql += " SELECT count(*) FROM won"
    return sql


# --- elsewhere: the same writes as plain statements in one transaction ------------------------------------


def claim_plain(job_id, now, worker: str, *, sent: bool = False) -> Job | None:
    """``claim`` as three statements in one transaction: the job moved to RUNNING only while PENDING and
    due (read back by the UPDATE's RETURNING), its attempt row, its tenant. ``sent``: ``dispatched_at``
    stamped too (a job run in-process in place of a message)."""
    pk = as_uuid(job_id)
    if pk is None:  # not a job id at all: as "no such row"
        return None
    db = default_db()
    sets = {"status": JobStatus.RUNNING, "started_at": now, "heartbeat_at": now, "updated_at": now}
    if sent:
        sets["dispatched_at"] = now
    key = _prep(Job, "id", pk, db)
    params = [_prep(Job, name, value, db) for name, value in sets.items()]
    params += [key, JobStatus.PENDING, _prep(Job, "run_after", now, db)]
    with transaction.atomic(using=db.alias), db.cursor() as cursor:
        cursor.execute(_claim_plain_sql(tuple(sets)), params)
        row = cursor.fetchone()
        if row is None:
            return None
        job = _from_row(Job, row)
        started = _prep(JobAttempt, "started_at", now, db)
        cursor.execute(_attempt_plain_sql(), [key, job.attempts, started, worker])
        cursor.execute(_tenant_plain_sql(), [_prep(Tenant, "id", job.tenant_id, db)])
        job.tenant = _from_row(Tenant, cursor.fetchone())
    return job


@cache
def _claim_plain_sql(sets: tuple[str, ...]) -> str:
    return (
        f"UPDATE {quote_name(Job._meta.db_table)} SET {assignments(Job, sets)}, attempts = attempts + 1 "  # noqa: S608 (our columns)
        f"WHERE id = %s AND status = %s AND run_after <= %s RETURNING {', '.join(model_columns(Job))}"
    )


@cache
def _attempt_plain_sql() -> str:
    return (
        f"INSERT INTO {quote_name(JobAttempt._meta.db_table)} "  # noqa: S608 (our table)
        "(job_id, number, started_at, finished_at, outcome, error, detail, worker) "
        "VALUES (%s, %s, %s, NULL, '', '', '', %s)"
    )


@cache
def _tenant_plain_sql() -> str:
    return f"SELECT {', '.join(model_columns(Tenant))} FROM {quote_name(Tenant._meta.db_table)} WHERE id = %s"  # noqa: S608


def finish_plain(job: Job, fields: dict[str, Any], attempt: dict[str, Any], event: AuditEvent | None) -> bool:
    """``finish`` as its plain statements in one transaction, with the same conditions and answer."""
    db = default_db()
    pk = _prep(Job, "id", job.pk, db)
    job_params = [_prep(Job, name, value, db) for name, value in fields.items()] + [pk, JobStatus.RUNNING, job.attempts]
    attempt_params = [_prep(JobAttempt, name, value, db) for name, value in attempt.items()] + [pk, job.attempts]
    with transaction.atomic(using=db.alias), db.cursor() as cursor:
        cursor.execute(_finish_job_plain_sql(tuple(fields)), job_params)
        won = cursor.rowcount > 0
        cursor.execute(_finish_attempt_plain_sql(tuple(attempt)), attempt_params)
        if won and event is not None:
            cursor.execute(insert_sql(AuditEvent), insert_values(event)[1])
    return won


@cache
def _finish_job_plain_sql(fields: tuple[str, ...]) -> str:
    sets = assignments(Job, fields)
    return f"UPDATE {quote_name(Job._meta.db_table)} SET {sets} WHERE id = %s AND status = %s AND attempts = %s"  # noqa: S608


@cache
def _finish_attempt_plain_sql(attempt: tuple[str, ...]) -> str:
    return (
        f"UPDATE {quote_name(JobAttempt._meta.db_table)} SET {assignments(JobAttempt, attempt)} "  # noqa: S608 (our columns)
        "WHERE job_id = %s AND number = %s AND finished_at IS NULL"
    )
