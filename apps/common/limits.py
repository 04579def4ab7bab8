"""Plan limits, checked where a resource is made.

The module that makes a resource (a website, a mailbox, a database, a pod) calls ``check_limit``
inside the transaction that creates it, after the row exists; the module that sells plans
(``apps.hosting``) registers the check that knows the customer's plan. The resource modules
therefore never import the plans module (which imports them to provision a plan): the registry
lives here, at the ground floor, and a limit is enforced by every door (API, admin, portal, jobs)
because it is enforced in the service they all call.

A check raises ``apps.common.exceptions.Conflict`` (a 409 naming the limit) to refuse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .registry import Registry


@dataclass(frozen=True)
class LimitRequest:
    """What is being made: ``resource`` is ``"websites"``, ``"mailboxes"``, ``"databases"`` or
    ``"pods"``; ``customer_id`` the customer it is made for (None: the tenant's own, no plan
    applies); ``obj`` the new row (already saved, so counts include it); ``extra`` what the
    resource's size is, when a limit is on size (``{"quota_mb": 2048}``)."""

    tenant_id: Any
    resource: str
    customer_id: Any = None
    obj: Any = None
    extra: dict = field(default_factory=dict)


LIMIT_CHECKS: Registry[Callable[[LimitRequest], None]] = Registry("resource limit check")


def check_limit(tenant_id, resource: str, *, customer_id=None, obj=None, **extra: Any) -> None:
    """Ask every registered check; the first refusal raises (a ``Conflict``)."""
    request = LimitRequest(tenant_id=tenant_id, resource=resource, customer_id=customer_id, obj=obj, extra=extra)
    for check in LIMIT_CHECKS:
        check(request)
