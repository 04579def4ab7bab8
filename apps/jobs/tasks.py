"""Celery entry points of the job outbox; the work is in services."""

from celery import shared_task

from . import services


@shared_task(name=services.RUN_TASK, acks_late=True, reject_on_worker_lost=True)
def run(job_id: str) -> str:
    return services.run_job(job_id)


@shared_task(name="jobs.sweep")
def sweep() -> dict:
    return services.sweep()
