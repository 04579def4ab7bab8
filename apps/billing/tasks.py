from celery import shared_task

from .services.billing_run import billing_run
from .services.dunning import dunning_run


@shared_task(name="billing.run")
def run() -> dict:
    result = billing_run()
    return {**result.__dict__, "dunning": dunning_run()}
