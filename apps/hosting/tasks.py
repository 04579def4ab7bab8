"""Celery entry points of hosting (beat): the reconciliation check and the disk measurements."""

from __future__ import annotations

from celery import shared_task

from . import reconciliation, services


@shared_task(name="hosting.reconcile")
def reconcile() -> dict:
    return reconciliation.reconcile_all()


@shared_task(name="hosting.measure_disk")
def measure_disk() -> dict:
    return services.measure_disk_all()
