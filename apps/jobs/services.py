"""The job outbox (docs/architecture.md, "Jobs").

enqueue: insert the row in the caller's transaction, dispatch on commit.
run:     claim the row with SELECT … FOR UPDATE SKIP LOCKED, run the handler in the job's
         tenant scope, record the outcome; retry with exponential backoff up to a limit.
sweep:   re-dispatch PENDING rows whose message was lost and RUNNING rows whose worker died.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict
from apps.common.prepared import as_uuid
from apps.tenancy.scoping import tenant_scope

from . import errors, registry, statements
from .models import Job, JobAttempt, JobStatus

log = logging.getLogger(__name__)

# The Celery entry point that runs a job (tasks.py; JobsConfig.ready registers it). Sent by name:
# the tasks call these services, so the services do not import the tasks.
RUN_TASK = "jobs.run"


def job_enqueue(
    *,
    tenant,
    type: str,
    payload: dict[str, Any] | None = None,
    key: str | None = None,
    actor=None,
    obj=None,
    max_attempts: int | None = None,
) -> Job:
    """Store a job; it is dispatched only if and when the surrounding transaction commits.

    With ``key``, enqueueing again returns the existing job instead of a second one.
    """
    if registry.get(type) is None:
        raise ValueError(f"No handler is registered for job type {type!r}.")
    fields: dict[str, Any] = dict(
        tenant=tenant,
        type=type,
        payload=payload or {},
        idempotency_key=key,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        max_attempts=max_attempts or settings.MPANEL_JOB_MAX_ATTEMPTS,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        # Sent on commit (below): stamped now rather than by an UPDATE when it is sent. A commit
        # that comes later than MPANEL_JOB_PENDING_REDISPATCH may be sent twice; run_job's
        # claim runs it once. With MPANEL_JOBS_EAGER, dispatch() stamps it as it runs it.
        dispatched_at=None if settings.MPANEL_JOBS_EAGER else timezone.now(),
    )
    if key is None and one_statement():
        # Nothing to collide with (the unique key is the idempotency key): the row and its audit event
        # in one statement, its own transaction in autocommit; inside the caller's transaction within a
        # savepoint, as before, so a failure leaves that transaction usable.
        job = Job(**fields)
        job.check_before_save()
        after = {"type": type, "payload": job.payload}
        event = audit.build(action="job.enqueue", obj=job, tenant=tenant, after=after, **audit.by(actor))
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            statements.insert_job_and_event(job, event)
            job_id = job.pk
            transaction.on_commit(lambda: dispatch(job_id, stamped=True))
        return job
    with transaction.atomic():
        if key:
            existing = Job.all_tenants.filter(tenant=tenant, idempotency_key=key).first()
            if existing is not None:
                return existing
        if key is None:
            # Nothing to collide with (the unique key is the idempotency key): no savepoint round trips.
            job = Job.all_tenants.create(**fields)
        else:
            try:
                with transaction.atomic():
                    job = Job.all_tenants.create(**fields)
            except IntegrityError:
                return Job.all_tenants.get(tenant=tenant, idempotency_key=key)
        audit.record(
            action="job.enqueue",
            obj=job,
            tenant=tenant,
            after={"type": type, "payload": job.payload},
            **audit.by(actor),
        )
        job_id = job.pk
        transaction.on_commit(lambda: dispatch(job_id, stamped=True))
    return job


def one_statement() -> bool:
    """Whether the outbox writes each group of rows in one statement (PostgreSQL: apps/jobs/statements.py);
    elsewhere (SQLite, the embedded default) the claim and the finish are their plain statements in one
    transaction (``statements.claim_plain``, ``finish_plain``) and an enqueue is the ORM's. All write the
    same rows (tests/kernel/test_jobs_statements.py, tests/kernel/test_jobs_sqlite.py)."""
    return connection.vendor == "postgresql"


def dispatch(job_id, countdown: float | None = None, *, stamped: bool = False) -> None:
    """Hand a job to a worker. Never raises: if the broker is down the sweeper sends it later.

    ``dispatched_at`` is when the message is expected to reach a worker; the sweeper sends
    again only once that is ``MPANEL_JOB_PENDING_REDISPATCH`` seconds past. ``stamped``: the row was
    written with its ``dispatched_at`` already (a new job), so it is not written again.
    """
    if settings.MPANEL_JOBS_EAGER:
        if countdown:
            # The embedded default's loop (manage.py run_jobs → sweep) runs it when it is due; it
            # sends only undispatched rows (or ones past the grace), so mark it not sent.
            Job.all_tenants.filter(pk=job_id).update(dispatched_at=None)
            return
        run_job(job_id, sent=True)
        return
    if not stamped:
        expected = timezone.now() + timedelta(seconds=countdown or 0)
        Job.all_tenants.filter(pk=job_id).update(dispatched_at=expected)
    run_task = current_app.tasks[RUN_TASK]
    try:
        run_task.apply_async(args=[str(job_id)], countdown=countdown)
    except Exception:  # the broker is unreachable: the row stays PENDING for the sweeper
        log.exception("could not dispatch job %s; the sweeper will retry", job_id)


class _Heartbeats:
    """Marks the RUNNING jobs of this process alive while their handlers work, so only a dead worker looks
    stale: one thread per process (started with its first job, again after a fork), not one per job."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[Any, int] = {}  # job id -> the attempt this process runs
        self.thread: threading.Thread | None = None
        self.interval = 1.0

    def add(self, job_id, attempt: int, interval: float) -> None:
        with self.lock:
            self.running[job_id] = attempt
            self.interval = interval
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._beat, daemon=True, name="job-heartbeats")
                self.thread.start()

    def remove(self, job_id) -> None:
        with self.lock:
            self.running.pop(job_id, None)

    def _beat(self) -> None:
        # A job is beaten for at the latest one interval after it started: what a per-job thread did.
        started: dict[Any, float] = {}
        while True:
            time.sleep(min(self.interval / 4, 1.0))
            now = time.monotonic()
            with self.lock:
                running = dict(self.running)
            due = []
            for job_id, attempt in running.items():
                last = started.setdefault((job_id, attempt), now)
                if now - last >= self.interval:
                    due.append((job_id, attempt))
                    started[(job_id, attempt)] = now
            for key in [k for k in started if k[0] not in running or running[k[0]] != k[1]]:
                del started[key]
            if not due:
                continue
            try:
                for job_id, attempt in due:
                    # Only for this attempt: a slow old worker must not keep a newer attempt looking alive.
                    Job.all_tenants.filter(pk=job_id, status=JobStatus.RUNNING, attempts=attempt).update(
                        heartbeat_at=timezone.now()
                    )
            except Exception:  # the database is away for a moment: the next beat tries again
                log.exception("could not mark running jobs alive")
            finally:
                # Beats are minutes apart: no connection is held in between (nor left open on a test database).
                connection.close()


_heartbeats = _Heartbeats()


def _backoff(attempt: int) -> timedelta:
    base = settings.MPANEL_JOB_BACKOFF_SECONDS
    return timedelta(seconds=min(base * (2 ** (attempt - 1)), 3600))


def run_job(job_id, *, sent: bool = False) -> str:
    """Run one job if it is due and nobody else holds it. Returns what happened (for logs and tests).

    ``sent``: run in-process in place of a message (``MPANEL_JOBS_EAGER``): ``dispatched_at`` is stamped
    as a message's sending would; by the plain claim in its own UPDATE (the embedded default: one
    write per job less), so a job it does not claim stays unsent for the embedded loop's sweep."""
    now = timezone.now()
    if one_statement():
        if sent:  # the one-statement claim does not stamp it
            Job.all_tenants.filter(pk=job_id).update(dispatched_at=now)
        job = _claim(job_id, now)
    else:
        job = statements.claim_plain(job_id, now, socket.gethostname(), sent=sent)
    if job is None:
        return _why_not_claimed(job_id, now)
    return _run_claimed(job)


def _claim(job_id, now) -> Job | None:
    """The claim in one statement (statements.claim), which reads the claimed job with its tenant back.

    It is the task's first statement, and its own connection check: the health check that
    ``CONN_HEALTH_CHECKS`` re-arms before each task (mpanel/celery.py) would cost every job a round trip of
    its own (``SELECT 1``). A claim that fails on a connection the database dropped (a restart, a killed
    backend) is made once more on a new connection, as the check would have replaced it first.
    """
    job_id = as_uuid(job_id)
    if job_id is None:  # not a job id at all: as "no such row"
        return None
    worker = socket.gethostname()
    if connection.in_atomic_block:
        return statements.claim(job_id, now, worker)
    if connection.connection is not None:
        connection.health_check_done = True
    try:
        return statements.claim(job_id, now, worker)
    except (InterfaceError, OperationalError):
        if connection.connection is not None and connection.is_usable():
            raise  # the database answered: a real error, not a dropped connection
        connection.close()
        return statements.claim(job_id, now, worker)


def _why_not_claimed(job_id, now) -> str:
    """What run_job answers when the claim took nothing (for logs and tests only; the row is not locked)."""
    try:
        row = Job.all_tenants.filter(pk=job_id).values_list("status", "run_after").first()
    except (ValueError, ValidationError):
        row = None
    if row is None:
        return "busy"
    status, run_after = row
    if status != JobStatus.PENDING:
        return "skipped"
    if run_after > now:
        return "not_due"
    return "busy"  # pending and due, but another worker holds the row


def _run_claimed(job: Job) -> str:
    handler = registry.get(job.type)
    _heartbeats.add(job.pk, job.attempts, max(1.0, settings.MPANEL_JOB_HEARTBEAT_TIMEOUT / 4))
    # The handler's own error messages (a pod's, a site's last_error) and ours name one reference.
    with errors.error_reference(f"{job.pk}#{job.attempts}"):
        try:
            if handler is None:
                raise registry.PermanentError(f"No handler is registered for job type {job.type!r}.")
            with tenant_scope(job.tenant):
                result = handler(job)
        except Exception as exc:
            # The tenant reads the safe message (apps.jobs.errors); the operator the whole story.
            public = errors.tenant_message(exc)
            detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
            if isinstance(exc, registry.PermanentError):
                return _finish(job, JobStatus.FAILED, error=public, detail=detail)
            log.warning("job %s (%s) attempt %s failed: %s", job.pk, job.type, job.attempts, exc)
            if job.attempts < job.max_attempts:
                return _finish(job, JobStatus.PENDING, error=public, detail=detail, retry_in=_backoff(job.attempts))
            return _finish(job, JobStatus.FAILED, error=public, detail=detail)
        finally:
            _heartbeats.remove(job.pk)
    return _finish(job, JobStatus.SUCCEEDED, result=result if isinstance(result, dict) else {"value": result})


def _finish(
    job: Job, status: str, *, error: str = "", detail: str = "", result: dict | None = None, retry_in=None
) -> str:
    now = timezone.now()
    fields: dict[str, Any] = {"status": status, "heartbeat_at": now, "updated_at": now}
    if status == JobStatus.PENDING:
        fields["run_after"] = now + retry_in
    else:
        fields["finished_at"] = now
    if error:
        fields["last_error"] = error[:10000]
        fields["error_detail"] = detail[:10000]
    if result is not None:
        fields["result"] = result
    attempt = {
        "finished_at": now,
        "outcome": "succeeded" if status == JobStatus.SUCCEEDED else "failed",
        "error": error[:10000],
        "detail": detail[:10000],
    }
    finished = status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
    # Built before the write, from the job as the worker holds it.
    event = audit.build(**_finish_audit(job, status)) if finished else None
    with transaction.atomic() if connection.in_atomic_block else nullcontext():
        if one_statement():
            won = statements.finish(job, fields, attempt, event)
        else:  # in its own transaction: only the holder of this attempt finishes it (a swept job's is dropped)
            won = statements.finish_plain(job, fields, attempt, event)
        if won and status == JobStatus.PENDING:
            job_id = job.pk
            transaction.on_commit(lambda: dispatch(job_id, countdown=retry_in.total_seconds()))
    return status.lower() if won else "superseded"


def _finish_audit(job: Job, status: str) -> dict[str, Any]:
    """The audit event of a finished job (``audit.record``'s arguments)."""
    return {
        "action": f"job.{status.lower()}",
        "obj": job,
        "tenant": job.tenant,
        "actor": None,
        "changes": {"status": [JobStatus.RUNNING, status]},
    }


def sweep(*, limit: int = 500) -> dict[str, int]:
    """Recover lost work. Safe to run anywhere, any number of times, concurrently."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.MPANEL_JOB_HEARTBEAT_TIMEOUT)
    grace = timedelta(seconds=settings.MPANEL_JOB_PENDING_REDISPATCH)
    recovered = failed = redispatched = 0
    with transaction.atomic():
        stale = list(
            Job.all_tenants.select_for_update(skip_locked=True)
            .filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
            .order_by("pk")[:limit]
        )
        for job in stale:
            JobAttempt.objects.filter(job=job, number=job.attempts, finished_at__isnull=True).update(
                finished_at=now, outcome="lost", error="The worker stopped answering (no heartbeat)."
            )
            if job.attempts >= job.max_attempts:
                job.status = JobStatus.FAILED
                job.finished_at = now
                job.last_error = "The worker was lost and no attempts are left."
                failed += 1
            else:
                job.status = JobStatus.PENDING
                job.run_after = now
                job.dispatched_at = None
                recovered += 1
            job.save(update_fields=["status", "finished_at", "last_error", "run_after", "dispatched_at", "updated_at"])
    due = list(
        Job.all_tenants.filter(status=JobStatus.PENDING, run_after__lte=now)
        .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - grace))
        .order_by("run_after")
        .values_list("pk", flat=True)[:limit]
    )
    for job_id in due:
        dispatch(job_id)
        redispatched += 1
    return {"recovered": recovered, "failed": failed, "redispatched": redispatched}


@transaction.atomic
def job_retry(*, job: Job, actor=None) -> Job:
    job = Job.all_tenants.select_for_update().get(pk=job.pk)
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise Conflict(f"A {job.status} job cannot be retried.")
    before = job.status
    job.status = JobStatus.PENDING
    job.run_after = timezone.now()
    job.finished_at = None
    job.dispatched_at = None
    job.max_attempts = job.attempts + settings.MPANEL_JOB_MAX_ATTEMPTS
    job.save()
    audit.record(
        action="job.retry", obj=job, tenant=job.tenant, changes={"status": [before, job.status]}, **audit.by(actor)
    )
    job_id = job.pk
    transaction.on_commit(lambda: dispatch(job_id))
    return job


@transaction.atomic
def job_cancel(*, job: Job, actor=None) -> Job:
    job = Job.all_tenants.select_for_update().get(pk=job.pk)
    if job.status != JobStatus.PENDING:
        raise Conflict(f"A {job.status} job cannot be cancelled; only PENDING jobs can.")
    job.status = JobStatus.CANCELLED
    job.finished_at = timezone.now()
    job.save()
    audit.record(
        action="job.cancel",
        obj=job,
        tenant=job.tenant,
        changes={"status": [JobStatus.PENDING, JobStatus.CANCELLED]},
        **audit.by(actor),
    )
    return job
