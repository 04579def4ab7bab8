from celery import shared_task

from . import services


@shared_task(name="domains.expire")
def expire() -> int:
    return services.domains_expire()
