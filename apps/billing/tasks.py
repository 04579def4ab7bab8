"""Celery entry points of billing (beat's schedule and the emails queued by ``services.notifications``)."""

from celery import shared_task

from .services.billing_run import billing_run
from .services.dunning import dunning_run
from .services.notifications import SEND_BATCH, SEND_ONE, send_invoice_email
from .services.reconciliation import reconcile_open_sessions
from .services.webhooks import APPLY_TASK, DRAIN_TASK
from .services.webhooks import drain as webhook_drain
from .services.webhooks import process as webhook_process
from .services.webhooks import sweep as webhook_sweep


@shared_task(name="billing.run")
def run() -> dict:
    result = billing_run()
    return {**result.__dict__, "dunning": dunning_run()}


@shared_task(name=SEND_ONE, autoretry_for=(OSError,), retry_backoff=60, max_retries=8)
def send_invoice_email_task(invoice_id: str, event: str) -> None:
    send_invoice_email(invoice_id, event)


@shared_task(name="billing.reconcile_stripe")
def reconcile_stripe() -> dict:
    return reconcile_open_sessions()


@shared_task(name=SEND_BATCH)
def send_invoice_emails_task(invoice_ids: list[str], event: str) -> None:
    """A batch's emails in one message from the billing run; each sent (and retried) as its own task here."""
    for invoice_id in invoice_ids:
        send_invoice_email_task.delay(invoice_id, event)


# acks_late with reject_on_worker_lost (settings): a worker that dies mid-event leaves the message to
# another; the row lock and the event's status make a second run a no-op once the first committed.
@shared_task(name=APPLY_TASK)
def webhook_apply(event_id: str) -> str:
    return webhook_process(event_id).status


# What the answer to a delivery asks for (``webhooks.nudge``): every pending event, one invoice's in one
# transaction. acks_late too: a drain killed mid-way is run again; what it committed is final.
@shared_task(name=DRAIN_TASK)
def webhooks_drain() -> int:
    return webhook_drain()


@shared_task(name="billing.webhooks_sweep")
def webhooks_sweep() -> int:
    return webhook_sweep()
