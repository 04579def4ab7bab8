"""Job handlers for the job machinery's own tests. Idempotent like every real handler."""

import time

from apps.jobs.registry import PermanentError, handler

from .models import JobCall, JobEffect


def _effect(key: str) -> dict:
    _effect_row, created = JobEffect.objects.get_or_create(key=key)
    return {"key": key, "created": created}


@handler("test.record")
def record(job):
    JobCall.objects.create(key=job.payload["key"])
    return _effect(job.payload["key"])


@handler("test.sleep")
def sleep(job):
    JobCall.objects.create(key=job.payload["key"])
    time.sleep(float(job.payload.get("seconds", 5)))
    return _effect(job.payload["key"])


@handler("test.flaky")
def flaky(job):
    JobCall.objects.create(key=job.payload["key"])
    if job.attempts <= int(job.payload.get("fail_times", 1)):
        raise RuntimeError(f"planned failure on attempt {job.attempts}")
    return _effect(job.payload["key"])


@handler("test.broken")
def broken(job):
    raise PermanentError("this job can never succeed")


@handler("test.backend")
def backend(job):
    """Which PostgreSQL backend ran the handler: the worker keeps its connection between jobs."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return {"pid": cursor.fetchone()[0]}
