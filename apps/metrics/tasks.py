from celery import shared_task

from . import services


@shared_task(name="metrics.report_local")
def report_local() -> dict:
    return services.report_local()


@shared_task(name="metrics.rollup")
def rollup() -> dict:
    return services.rollup()


@shared_task(name="metrics.purge")
def purge() -> dict:
    return services.purge()
