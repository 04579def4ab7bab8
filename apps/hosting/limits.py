"""The plan limit check every resource service calls (``apps.common.limits.check_limit``).

A resource made for a customer with a live hosting account is checked against the customer's
plans (their limits added up, ``services.combined_limits``): one more than allowed is a 409 naming
the limit. A customer with no hosting account (or a resource of the tenant's own, with no
customer) has no plan limit. While every plan of the customer is suspended nothing new is made.

Concurrency: the check is the last step of the resource's transaction (the row is saved, so the
count includes it) and takes a per-customer advisory lock first: two concurrent creates for one
customer count one after the other, and the lock is the last one taken, so it never waits while
holding a lock another waiter needs.
"""

from __future__ import annotations

from django.db import connection

from apps.common.exceptions import Conflict
from apps.common.limits import LIMIT_CHECKS, LimitRequest
from apps.common.locks import advisory_xact_lock

from . import services
from .models import AccountStatus


@LIMIT_CHECKS.register("hosting.plan")
def plan_limit_check(request: LimitRequest) -> None:
    if request.customer_id is None:
        return
    accounts = list(services.live_accounts(request.tenant_id, request.customer_id))
    if not accounts:
        return
    if connection.in_atomic_block:
        advisory_xact_lock([f"hosting.limits:{request.customer_id}"])
    making = request.resource in ("websites", "mailboxes", "databases", "pods")  # not a settings change
    if making and all(a.status == AccountStatus.SUSPENDED for a in accounts):
        raise Conflict("The customer's hosting plan is suspended: nothing new can be made until it is resumed.",
                       code="plan_suspended")  # fmt: skip
    limits = services.combined_limits(accounts)
    resource = request.resource
    limit = limits.get(resource)
    if limit is not None:
        used = services.customer_usage(request.tenant_id, request.customer_id).get(resource, 0)
        if used > limit:
            noun = services.NOUNS.get(resource, resource)
            raise Conflict(f"Plan limit reached: {resource} ({limit} {noun} allowed, {used - 1} in use).",
                           code="plan_limit")  # fmt: skip
    obj = request.obj
    if resource in ("websites", "website_settings") and obj is not None:
        versions = limits.get("php_versions")
        if versions and obj.php_version and obj.php_version not in versions:
            raise Conflict(f"Plan limit: php_versions (the plan allows PHP {', '.join(versions)}).",
                           code="plan_limit")  # fmt: skip
        if obj.https and not limits.get("ssl", True):
            raise Conflict("Plan limit: ssl (the plan includes no HTTPS).", code="plan_limit")
    quota = request.extra.get("quota_mb")
    cap = limits.get("mail_quota_mb")
    if (
        resource in ("mailboxes", "mail_quota")
        and quota is not None
        and cap is not None
        and (quota == 0 or quota > cap)
    ):
        raise Conflict(f"Plan limit: mail_quota_mb (at most {cap} MB per mailbox).", code="plan_limit")  # fmt: skip
