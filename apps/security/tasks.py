from celery import shared_task

from . import events, mfa


@shared_task(name="security.purge")
def purge() -> dict:
    """Security events past their tenant's retention, and stale login challenges."""
    return {"events": events.purge_expired(), "challenges": mfa.purge_challenges()}
