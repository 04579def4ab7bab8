from celery import shared_task

from . import services


@shared_task(name="nodes.heartbeat")
def heartbeat() -> dict:
    return services.heartbeat_all()
