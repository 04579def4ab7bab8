from celery import shared_task

from . import services


@shared_task(name="ssl.sweep")
def sweep() -> dict:
    """Renew what is due, expire what ran out, alert 14 days ahead (Celery beat; run_jobs embedded)."""
    return services.sweep()
