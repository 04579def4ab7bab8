"""The row locks a pod write takes, in the one order every pod transaction follows.

    1. the pod (when it exists already): ``services.pods.locked`` (its Lifecycle), FOR UPDATE
    2. its node, or every candidate node in primary-key order: ``node`` / ``candidate_nodes``
    3. the tenant row, for the quota (FOR NO KEY UPDATE): ``tenant_for_quota``

- ``pod_create``: no pod row yet: every active node (2), then the tenant (3); the pod is inserted last.
- ``pod_resize``: the pod (1), its node (2), the tenant (3).
- the convergence jobs: the pod (1), then its node (2) when a delete frees the capacity.
- ``pod_update``, suspend, resume, delete and a failed job: the pod (1) only.

Any two of these transactions that meet on a row take it at the same step, so the later one queues
behind the earlier instead of deadlocking (tests/hosting/test_cloudpods_api.py::TestLockOrder pins it).
"""

from __future__ import annotations

from django.db import connection

from apps.nodes.models import Node, NodeStatus
from apps.tenancy.models import Tenant
from apps.tenancy.scoping import ScopedPreparedQuery


def candidate_nodes() -> list[Node]:
    """Step 2 for a create: every active node of the tenant, in primary-key order (no deadlocks
    between two creates that see the same nodes)."""
    return _CANDIDATES.rows()


# Every pod create reads them: compiled once per process, run for the tenant in scope.
_CANDIDATES = ScopedPreparedQuery(
    Node,
    lambda: Node.all_tenants.select_for_update().filter(status=NodeStatus.ACTIVE).order_by("pk"),
    for_write=True,
)


def node(pk, *, any_tenant: bool = False) -> Node:
    """Step 2 for a pod that has its node: that one node (``any_tenant``: outside a tenant's scope)."""
    manager = Node.all_tenants if any_tenant else Node.objects
    return manager.select_for_update().get(pk=pk)


def tenant_for_quota(tenant: Tenant) -> None:
    """Step 3: the tenant's row, FOR NO KEY UPDATE (inserts that point at the tenant go on), so that
    two creates or resizes on different nodes cannot both take the last of the quota. A database
    without row locks (the embedded SQLite: a write transaction holds the whole database from its
    ``BEGIN IMMEDIATE``) is already serialised, and the read would lock nothing: it is not made."""
    if not connection.features.has_select_for_update:
        return
    Tenant.objects.select_for_update(no_key=True).filter(pk=tenant.pk).first()
