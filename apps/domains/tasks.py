from celery import shared_task

from . import services


@shared_task(name="domains.expire")
def expire() -> int:
    return services.domains_expire()


@shared_task(name="domains.auto_renew")
def auto_renew() -> int:
    return len(services.domains_auto_renew())
