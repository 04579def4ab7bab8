"""Backup jobs. Each runs through its row's ``Lifecycle.run_job`` (the row locked for the whole
node call, so two jobs of one snapshot, restore or drill never act at once); a failure that
retrying cannot help marks the row ``error`` with a tenant-safe message, and a policy's failed
snapshot or drill is also shown on the policy."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from apps.jobs.registry import handler
from apps.nodes.drivers import NodeError

from . import crypto, services
from .models import DrillStatus, TaskStatus

OPTIONS = {"on_missing": "skip", "record_retry_errors": True}


def _secrets_checked(converge: Callable[..., dict]) -> Callable[..., dict]:
    """A password no key decrypts will not decrypt on a retry: a permanent error, like a node's."""

    @wraps(converge)
    def run(obj, job_type: str) -> dict:
        try:
            return converge(obj, job_type)
        except crypto.UndecryptableSecret as exc:
            raise NodeError(str(exc), permanent=True) from exc

    return run


@handler("backup.repository.init")
@handler("backup.repository.check")
@handler("backup.repository.delete")
@handler("backup.repository.test")
def repository_job(job) -> dict:
    return services.repositories.run_job(job, _secrets_checked(services.repository_converge),
                                         keep={"active", "deleting"}, **OPTIONS)  # fmt: skip


@handler("backup.snapshot.run")
@handler("backup.snapshot.forget")
def snapshot_job(job) -> dict:
    try:
        return services.snapshots.run_job(job, _secrets_checked(services.snapshot_converge),
                                          keep={"done"}, **OPTIONS)  # fmt: skip
    except Exception as exc:
        if job.type == "backup.snapshot.run":
            services.snapshot_failed(job.payload.get("snapshot"), getattr(exc, "message", None) or str(exc))
        raise


@handler("backup.snapshot.final")
def final_job(job) -> dict:
    """A resource's final snapshots before its delete job (apps.jobs.lifecycle.follow_up)."""
    return services.final_run(job)


@handler("backup.restore.run")
def restore_job(job) -> dict:
    return services.restores.run_job(job, _secrets_checked(services.restore_converge),
                                     progress=(TaskStatus.PENDING, TaskStatus.RUNNING), **OPTIONS)  # fmt: skip


@handler("backup.drill.run")
def drill_job(job) -> dict:
    try:
        return services.drills.run_job(job, _secrets_checked(services.drill_converge), keep={DrillStatus.RUNNING},
                                       on_missing="skip")  # fmt: skip
    except Exception as exc:
        if job.attempts >= job.max_attempts or getattr(exc, "permanent", False):
            services.drill_failed(job.payload.get("drill"), getattr(exc, "message", None) or str(exc))
        raise
