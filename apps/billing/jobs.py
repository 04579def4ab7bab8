"""Job handlers of billing: ``subscription.activate|suspend|resume|cancel`` call the provisioner
the subscription's product type registered (``services.subscriptions.PROVISIONERS``);
``invoice.autocharge`` charges an issued invoice on the customer's default card (``services.cards``)."""

from __future__ import annotations

from apps.jobs import registry

from .models import CardCharge, Subscription
from .services import cards
from .services.subscriptions import ACTIONS, provisioner_for


def run_provisioner(job, action: str) -> dict:
    sub = Subscription.objects.select_related("product").filter(pk=job.payload.get("subscription")).first()
    if sub is None:
        raise registry.PermanentError("The subscription no longer exists.")
    provisioner = provisioner_for(sub.product.type, action)
    if provisioner is None:
        # Products without infrastructure (a service, a licence) need nothing done on a node.
        return {"subscription": str(sub.pk), "action": action, "provisioned": False,
                "reason": f"no provisioner for {sub.product.type} products"}  # fmt: skip
    return {"subscription": str(sub.pk), "action": action, "provisioned": True, **(provisioner(sub) or {})}


for _action in ACTIONS:
    registry.handler(f"subscription.{_action}")(lambda job, _a=_action: run_provisioner(job, _a))


@registry.handler(cards.AUTOCHARGE_JOB)
def autocharge(job) -> dict:
    charge = job.payload.get("charge")
    if not charge or not CardCharge.objects.filter(pk=charge).exists():
        raise registry.PermanentError("The card charge no longer exists.")
    return cards.autocharge_run(charge)
