"""What a sold hosting plan, add-on or service does: billing's subscription jobs call these.

- ``hosting_plan``: activate makes the hosting account (web node, first website for the order's
  domain, mail domain, limits); suspend and resume follow the subscription; cancel terminates it.
  A plan change is checked against what is in use (``PLAN_CHANGES``: a 409 naming what is over).
- ``addon``: attached to its parent subscription (``config.parent``, the order item's or the
  subscription's config); activating, suspending, resuming or cancelling it recomputes the parent
  account's limits.
- ``service``: a to-do for the tenant's staff, from a recurring subscription's activation or, for
  a one-time sale, from the paid invoice of its order (``PAID``).
"""

from __future__ import annotations

from apps.audit import services as audit
from apps.backups import services as backup_services
from apps.billing.models import Subscription
from apps.billing.services.hooks import PAID
from apps.billing.services.subscriptions import PLAN_CHANGES, register_provisioner
from apps.catalog.models import Cycle, ProductType
from apps.common.exceptions import Conflict
from apps.jobs.registry import PermanentError
from apps.orders.models import OrderItem

from . import services


def _conflict_is_permanent(fn):
    """A refusal that retrying cannot change (a domain taken by another customer, a plan limit)
    fails the job at once with its message; anything else is retried by the job system."""

    def run(sub):
        try:
            return fn(sub)
        except Conflict as exc:
            if getattr(exc, "code", "") in ("no_web_node", "no_mail_node"):
                raise  # an operator adds a node: the retry then succeeds
            raise PermanentError(str(exc.detail if hasattr(exc, "detail") else exc)) from exc

    run.__name__ = fn.__name__
    run.__qualname__ = fn.__qualname__
    run.__module__ = fn.__module__
    return run


def plan_backups(sub: Subscription):
    """A plan whose config has ``backups_kept: N`` (N > 0) backs up the customer's whole account,
    keeping the last N snapshot sets (apps/backups: the customer's own repository and policy)."""
    keep = (sub.product.config or {}).get("backups_kept")
    if not keep or isinstance(keep, bool) or not isinstance(keep, int):
        return None
    return backup_services.customer_policy_ensure(tenant=sub.tenant, customer=sub.customer, keep_last=keep,
                                                  actor=audit.SYSTEM)  # fmt: skip


@_conflict_is_permanent
def plan_activate(sub: Subscription) -> dict:
    account = services.account_activate(sub)
    plan_backups(sub)
    return {"account": str(account.pk), "website": str(account.website_id or ""), "status": account.status}


def plan_suspend(sub: Subscription) -> dict:
    account = services.account_suspend(sub)
    return {
        "account": str(account.pk) if account else None,
        "suspended_sites": len(account.suspended_sites) if account else 0,
    }


def plan_resume(sub: Subscription) -> dict:
    account = services.account_resume(sub)
    return {"account": str(account.pk) if account else None}


def plan_cancel(sub: Subscription) -> dict:
    account = services.account_terminate(sub)
    return {"account": str(account.pk) if account else None, "terminated": account is not None}


register_provisioner("hosting_plan", activate=plan_activate, suspend=plan_suspend, resume=plan_resume,
                     cancel=plan_cancel)  # fmt: skip
PLAN_CHANGES.register("hosting_plan")(services.plan_change_check)


def _parent_account(sub: Subscription):
    parent_id = (sub.config or {}).get("parent")
    if not parent_id:
        raise PermanentError("This add-on names no parent subscription (config.parent).")
    parent = Subscription.all_tenants.filter(tenant_id=sub.tenant_id, pk=parent_id).first()
    if parent is None or parent.customer_id != sub.customer_id:
        raise PermanentError("This add-on's parent subscription is not one of the same customer's.")
    return services.account_of(parent)


def addon_refresh(sub: Subscription) -> dict:
    account = _parent_account(sub)
    if account is None:
        # The parent is not provisioned yet: its activation reads the add-on's limits then.
        return {"parent_account": None}
    account = services.account_refresh_limits(account)
    return {"parent_account": str(account.pk), "limits": account.limits}


register_provisioner("addon", activate=addon_refresh, suspend=addon_refresh, resume=addon_refresh,
                     cancel=addon_refresh)  # fmt: skip


def service_activate(sub: Subscription) -> dict:
    todo = services.service_todo(
        tenant_id=sub.tenant_id, key=f"service:subscription:{sub.pk}", product=sub.product,
        customer_id=sub.customer_id, subscription_id=sub.pk, quantity=sub.quantity,
        reference=f"Subscription {sub.pk}",
    )  # fmt: skip
    return {"todo": str(todo.pk)}


register_provisioner("service", activate=service_activate)


@PAID.register()
def one_time_services(invoice) -> None:
    """A paid order's one-time services each become a to-do (recurring ones come from their
    subscription's activation)."""
    items = OrderItem.all_tenants.select_related("product", "order").filter(
        order__invoice=invoice, product__type=ProductType.SERVICE, cycle=Cycle.ONETIME
    )
    for item in items:
        services.service_todo(
            tenant_id=item.tenant_id, key=f"service:order-item:{item.pk}", product=item.product,
            customer_id=item.order.customer_id, quantity=item.quantity, reference=f"Order {item.order_id}",
        )  # fmt: skip
