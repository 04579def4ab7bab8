"""What jobs' runs leave behind (job rows, attempt rows, audit events), normalised so that two databases'
runs compare: run in-process on PostgreSQL and in a subprocess on SQLite (tests/kernel/test_jobs_sqlite.py).

``main()`` (in a process of its own, Django set up from the environment's settings and database) migrates,
runs the cases and prints their trails as JSON.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.jobs import services
from apps.jobs.models import Job, JobAttempt, JobStatus

TIMES = {"id", "created_at", "updated_at", "run_after", "dispatched_at", "started_at", "heartbeat_at", "finished_at"}

# (type, payload, max_attempts): a success, a permanent failure, a retry, a last attempt failing.
CASES = [
    ("test.record", {}, 5),
    ("test.broken", {}, 5),
    ("test.flaky", {"fail_times": 1}, 5),
    ("test.flaky", {"fail_times": 9}, 1),
]


def trail(job_id, key: str) -> dict[str, Any]:
    row = Job.all_tenants.filter(pk=job_id).values().get()
    job = {k: v for k, v in row.items() if k not in TIMES} | {"times_set": sorted(k for k in TIMES if row[k])}
    job["tenant_id"] = "TENANT"
    job["sent_when_started"] = row["dispatched_at"] == row["started_at"] if row["started_at"] else None
    attempts = [
        {k: v for k, v in a.items() if k not in ("id", "job_id", "started_at", "finished_at")}
        | {"finished": a["finished_at"] is not None}
        for a in JobAttempt.objects.filter(job_id=job_id).order_by("number").values()
    ]
    events = [
        {k: v for k, v in e.items() if k not in ("id", "created_at", "object_id", "request_id", "tenant_id")}
        for e in AuditEvent.objects.filter(object_id=str(job_id)).order_by("created_at", "action").values()
    ]
    text = json.dumps({"job": job, "attempts": attempts, "events": events}, cls=DjangoJSONEncoder, sort_keys=True)
    return json.loads(text.replace(key, "KEY").replace(str(job_id), "JOB").replace(job_id.hex, "JOB"))


def run_cases(tenant, prefix: str) -> dict[str, Any]:
    """Each case enqueued in a transaction and run in-process when it commits (the embedded default's
    way: ``MPANEL_JOBS_EAGER``), then run again; a finish that lost its job to the sweeper; a claim of
    something that is not a job id."""
    out: dict[str, Any] = {}
    for type, payload, max_attempts in CASES:
        name = f"{type}-{max_attempts}"
        key = f"{prefix}-{name}"
        with transaction.atomic():
            job = services.job_enqueue(tenant=tenant, type=type, payload={"key": key, **payload},
                                       max_attempts=max_attempts)  # fmt: skip
        out[name] = {"again": services.run_job(job.pk), "trail": trail(job.pk, key)}

    key = f"{prefix}-superseded"
    job = services.job_enqueue(tenant=tenant, type="test.record", payload={"key": key})  # runs at once
    Job.all_tenants.filter(pk=job.pk).update(status=JobStatus.PENDING, run_after=timezone.now())
    claimed = services.statements.claim_plain(job.pk, timezone.now(), "worker-1")
    JobAttempt.objects.filter(job_id=job.pk, number=2).update(finished_at=timezone.now(), outcome="lost")
    Job.all_tenants.filter(pk=job.pk).update(status=JobStatus.PENDING, run_after=timezone.now() + timedelta(1))
    out["superseded"] = {
        "claimed_attempt": claimed.attempts,
        "claimed_tenant": str(claimed.tenant.pk) == str(tenant.pk),
        "late_success": services._finish(claimed, JobStatus.SUCCEEDED, result={"late": True}),
        "late_retry": services._finish(claimed, JobStatus.PENDING, error="x", retry_in=timedelta(seconds=1)),
        "trail": trail(job.pk, key),
    }
    out["not_a_job"] = services.statements.claim_plain("not-a-uuid", timezone.now(), "worker-1")
    return out


def main() -> None:
    from django.core.management import call_command

    from apps.tenancy.models import Tenant

    call_command("migrate", verbosity=0)
    tenant = Tenant.objects.create(name="Trails", slug="trails")
    print(json.dumps(run_cases(tenant, "run"), cls=DjangoJSONEncoder))
