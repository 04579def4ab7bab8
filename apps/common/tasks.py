from celery import shared_task

from . import idempotency


@shared_task(name="common.purge_idempotency")
def purge_idempotency() -> int:
    return idempotency.purge_expired()
