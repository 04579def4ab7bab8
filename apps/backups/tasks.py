"""Celery entry points of backups: ``backups.tick`` every minute (Celery beat; ``manage.py run_jobs``
in the embedded default) runs the policies whose cron time has come, the drills that are due, the
repositories' daily rotating checks, and forgets expired final snapshots (``services.due_policies``)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="backups.tick")
def tick() -> dict:
    return services.due_policies()
