"""Celery entry points of the databases app: the sizes of the databases, read from each server every
``MPANEL_DATABASE_SIZE_INTERVAL`` seconds (Celery beat; ``manage.py run_jobs`` in the embedded
default). The work is ``services.refresh_sizes``."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="databases.sizes")
def sizes() -> dict:
    return services.refresh_sizes()
