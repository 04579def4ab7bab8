"""CloudPod writes: placement with capacity reservation, the state machine, and convergence.

Placement rule (docs/modules/nodes-and-cloudpods.md): among the tenant's nodes that are ``active``,
have the ``pods`` role and have room for the whole plan (vCPU, memory, disk and a pod slot), take the one
with the most free memory (spread), then the most free pod slots, then the lowest hostname. The
candidate nodes are locked (``SELECT … FOR UPDATE``, in primary-key order) for the transaction
that reserves the capacity and creates the pod and its job, so concurrent creates cannot
over-commit a node. The order of every lock a pod write takes is in ``locks.py``.
"""

from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Subquery, Sum
from django.utils import timezone

from apps.audit import services as audit
from apps.billing.models import Subscription
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.limits import check_limit
from apps.common.prepared import PreparedQuery
from apps.jobs.lifecycle import Lifecycle, Move
from apps.nodes.drivers import PodSpec, driver_for
from apps.nodes.models import Node, NodeStatus
from apps.tenancy.models import Tenant

from . import locks
from . import plans as plan_config
from .models import LIVE, CloudPod, PodStatus, TenantQuota

SUBSCRIPTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")

# The pod's state machine: what the tenant may ask for, from where, and what each job converges an
# ``error`` pod to when it is retried. Moves audit and enqueue ``cloudpod.<name>``.
pods: Lifecycle[CloudPod] = Lifecycle(
    model=CloudPod,
    kind="cloudpod",
    payload_key="pod",
    noun="pod",
    moves={
        "resize": Move(
            to=PodStatus.RESIZING,
            sources={PodStatus.RUNNING},
            refusal="Only a running pod can be resized; this one is {status}.",
        ),
        "suspend": Move(
            to=PodStatus.SUSPENDED,
            sources={PodStatus.RUNNING},
            refusal="Only a running pod can be suspended; this one is {status}.",
        ),
        "resume": Move(
            to=PodStatus.RUNNING,
            sources={PodStatus.SUSPENDED},
            refusal="Only a suspended pod can be resumed; this one is {status}.",
        ),
        # Stays running: the job stops the container's processes and runs it again (rootfs kept).
        "restart": Move(
            to=PodStatus.RUNNING,
            sources={PodStatus.RUNNING},
            refusal="Only a running pod can be restarted; this one is {status}.",
        ),
        "delete": Move(
            to=PodStatus.DELETING,
            not_from={PodStatus.DELETING, PodStatus.DELETED},
            refusal="This pod is {status} already.",
        ),
    },
    job_targets={
        "cloudpod.provision": PodStatus.RUNNING,
        "cloudpod.resize": PodStatus.RUNNING,
        "cloudpod.resume": PodStatus.RUNNING,
        "cloudpod.restart": PodStatus.RUNNING,
        "cloudpod.suspend": PodStatus.SUSPENDED,
        "cloudpod.delete": PodStatus.DELETING,
    },
)


def _plan(name: str) -> plan_config.Plan:
    plan = plan_config.get_plan(name)
    if plan is None:
        raise InvalidInput(f"Unknown plan {name!r}; see /api/v1/cloudpods/plans/.", field="plan")
    return plan


def _check_subscription(subscription: str | None, *, exclude_pk=None) -> str | None:
    """The link to a billing subscription of this tenant that is not cancelled, and not linked to
    another live pod. (Both sides point at each other: ``subscription.external_ref`` is the pod.)"""
    from apps.billing.models import Subscription, SubscriptionStatus

    if subscription in (None, ""):
        return None
    subscription = str(subscription).strip()
    if not SUBSCRIPTION_RE.match(subscription):
        raise InvalidInput("Not a valid subscription reference.", field="subscription")
    sub = Subscription.objects.filter(pk=subscription).first()
    if sub is None:
        raise InvalidInput("No such subscription in this tenant.", field="subscription")
    if sub.status == SubscriptionStatus.CANCELLED:
        raise Conflict("This subscription is cancelled.", code="subscription_cancelled")
    if CloudPod.objects.filter(subscription=subscription, status__in=LIVE).exclude(pk=exclude_pk).exists():
        raise Conflict("This subscription is linked to another pod already.", code="subscription_in_use")
    return subscription


def _customer_of(subscription: str | None):
    """The customer of the subscription a pod is sold under (None: the tenant's own pod)."""
    if not subscription:
        return None
    return Subscription.objects.filter(pk=subscription).values_list("customer_id", flat=True).first()


def _link_subscription(pod: CloudPod, old: str | None) -> None:
    """Keep ``subscription.external_ref`` pointing at the pod that ``pod.subscription`` names."""
    from apps.billing.models import Subscription

    if old and old != pod.subscription:
        Subscription.objects.filter(pk=old, external_ref=str(pod.pk)).update(external_ref="")
    if pod.subscription:
        Subscription.objects.filter(pk=pod.subscription).update(external_ref=str(pod.pk))


def pick_node(nodes: list[Node], plan: plan_config.Plan) -> Node | None:
    """The placement rule (see the module's docstring)."""
    fitting = [
        n
        for n in nodes
        if n.status == NodeStatus.ACTIVE
        and "pods" in (n.roles or [])
        and n.fits(vcpu=plan.vcpu, memory_mb=plan.memory_mb, disk_gb=plan.disk_gb)
    ]
    if not fitting:
        return None
    return min(fitting, key=lambda n: (-n.free_memory_mb, -n.free_pods, n.hostname))


def _reserve(node: Node, *, vcpu, memory_mb: int, disk_gb: int, pods: int) -> None:
    node.allocated_vcpu += vcpu
    node.allocated_memory_mb += memory_mb
    node.allocated_disk_gb += disk_gb
    node.allocated_pods += pods
    node.save(
        update_fields=["allocated_vcpu", "allocated_memory_mb", "allocated_disk_gb", "allocated_pods", "updated_at"]
    )


def _usage_query(tenant_id: uuid.UUID, name: str):
    """A tenant's pods against its quota in one read: its live pods' number and memory, whether one of
    them is named ``name``, and the operator's override of its limits (its figures, and whether it is set)."""
    live = CloudPod.all_tenants.filter(tenant=OuterRef("pk"), status__in=LIVE).order_by().values("tenant")
    override = TenantQuota.all_tenants.filter(tenant=OuterRef("pk"))
    return (
        Tenant.objects.filter(pk=tenant_id)
        .only("pk")
        .annotate(
            used_pods=Subquery(live.annotate(n=Count("pk")).values("n")),
            used_memory_mb=Subquery(live.annotate(n=Sum("memory_mb")).values("n")),
            named=Subquery(live.filter(name=name).annotate(n=Count("pk")).values("n")),
            max_pods=Subquery(override.values("max_pods")),
            max_memory_mb=Subquery(override.values("max_memory_mb")),
            overridden=Exists(override),
        )
    )


# Read on every create and resize (and the quota route): compiled once per process.
_USAGE = PreparedQuery(Tenant, _usage_query, tenant_id=uuid.UUID, name=str)


def quota_usage(tenant) -> dict:
    """The tenant's limits (its operator-set override, else the platform's settings) and its use of them."""
    return _quota_usage(tenant)


def _quota_usage(tenant, name: str | None = None) -> dict:
    """``quota_usage``; with ``name``, also whether a live pod has that name (``name_taken``), in the
    same read (a create asks both)."""
    [row] = _USAGE.rows(tenant_id=tenant.pk, name=name or "")
    answer = {
        "max_pods": settings.CLOUDPOD_TENANT_MAX_PODS if row.max_pods is None else row.max_pods,
        "max_memory_mb": settings.CLOUDPOD_TENANT_MAX_MEMORY_MB if row.max_memory_mb is None else row.max_memory_mb,
        "overridden": bool(row.overridden),
        "used_pods": row.used_pods or 0,
        "used_memory_mb": row.used_memory_mb or 0,
    }
    if name is not None:
        answer["name_taken"] = bool(row.named)
    return answer


def _check_quota(tenant, *, pods: int, memory_mb: int, name: str | None = None) -> dict:
    """Would ``pods`` more pods and ``memory_mb`` more memory stay within the tenant's quota?
    Answers the usage read (with ``name_taken`` when ``name`` is given).

    The tenant's row is locked first (``locks.tenant_for_quota``) so that two creates or resizes on
    different nodes cannot both take the last of the quota.
    """
    locks.tenant_for_quota(tenant)
    quota = _quota_usage(tenant, name)
    max_pods, max_memory = quota["max_pods"], quota["max_memory_mb"]
    if pods and max_pods is not None and quota["used_pods"] + pods > max_pods:
        raise Conflict(f"The tenant's quota of {max_pods} pods is used up.", code="quota_exceeded")
    if memory_mb > 0 and max_memory is not None and quota["used_memory_mb"] + memory_mb > max_memory:
        raise Conflict(f"The tenant's quota of {max_memory} MB of pod memory is used up.", code="quota_exceeded")
    return quota


@transaction.atomic
def pod_create(
    *,
    tenant,
    name: str,
    plan: str,
    image: str | None = None,
    subscription: str | None = None,
    node: Node | None = None,
    actor=None,
) -> CloudPod:
    """``node``: an operator's choice (the admin), checked by the placement rule's own filter;
    without one (the API), the placement rule picks it."""
    chosen = _plan(plan)
    image = image or settings.CLOUDPOD_DEFAULT_IMAGE
    if image not in plan_config.images():
        raise InvalidInput(f"Unknown image {image!r}.", field="image")
    subscription = _check_subscription(subscription)
    nodes = locks.candidate_nodes()
    if _check_quota(tenant, pods=1, memory_mb=chosen.memory_mb, name=name)["name_taken"]:
        raise InvalidInput("A pod with this name exists already.", field="name")
    if node is not None:
        wanted = next((n for n in nodes if n.pk == node.pk), None)  # the locked row, if it is a candidate
        if wanted is None or pick_node([wanted], chosen) is None:
            raise Conflict(f"Node {node.hostname} is not an active pods node of this tenant with room for the plan "
                           f"{chosen.name!r}.", code="no_capacity", field="node")  # fmt: skip
        node = wanted
    else:
        node = pick_node(nodes, chosen)
    if node is None:
        raise Conflict(f"No node has room for the plan {chosen.name!r}.", code="no_capacity")
    _reserve(node, vcpu=chosen.vcpu, memory_mb=chosen.memory_mb, disk_gb=chosen.disk_gb, pods=1)
    pod_id = uuid.uuid4()
    pod = CloudPod(
        id=pod_id,
        tenant=tenant,
        name=name,
        plan=chosen.name,
        image=image,
        node=node,
        container_id=f"mp-{pod_id.hex}",
        vcpu=chosen.vcpu,
        memory_mb=chosen.memory_mb,
        disk_gb=chosen.disk_gb,
        pids=chosen.pids,
        subscription=subscription,
    )
    try:
        # No savepoint of its own: the error leaves this function's transaction (or savepoint), which
        # rolls back the node's reservation with it.
        pod.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("A pod with this name exists already.", field="name") from exc
    # The plan limits of the customer the pod is sold to (apps.common.limits), the row saved.
    check_limit(pod.tenant_id, "pods", customer_id=_customer_of(subscription), obj=pod)
    audit.created(pod, "cloudpod.create", actor=actor)
    if subscription:
        _link_subscription(pod, None)
        audit.record(
            action="cloudpod.subscription_link",
            obj=pod,
            changes={"subscription": [None, subscription]},
            **audit.by(actor),
        )
    pods.enqueue(pod, "cloudpod.provision", actor=actor)
    return pod


@transaction.atomic
def pod_update(*, pod: CloudPod, data: dict, actor=None) -> CloudPod:
    """Name and subscription link; everything else has its own action."""
    pod = pods.locked(pod)
    if pod.status in (PodStatus.DELETING, PodStatus.DELETED):
        raise Conflict(f"A {pod.status} pod cannot be changed.")
    with audit.change(pod, "cloudpod.update", actor=actor):
        if "name" in data and data["name"] != pod.name:
            if CloudPod.objects.filter(name=data["name"], status__in=LIVE).exclude(pk=pod.pk).exists():
                raise InvalidInput("A pod with this name exists already.", field="name")
            pod.name = data["name"]
        old_subscription = pod.subscription
        if "subscription" in data:
            pod.subscription = _check_subscription(data["subscription"], exclude_pk=pod.pk)
        pod.save()
        _link_subscription(pod, old_subscription)
    return pod


@transaction.atomic
def pod_resize(*, pod: CloudPod, plan: str, actor=None) -> CloudPod:
    """The declared ``resize`` move, with the node's capacity and the quota checked and reserved
    between the check and the change (so its steps are spelled out rather than ``pods.move``)."""
    pod = pods.locked(pod)
    new = _plan(plan)
    pods.check(pod, "resize")
    if new.name == pod.plan:
        raise InvalidInput("The pod is on this plan already.", field="plan")
    node = locks.node(pod.node_id)
    delta = {
        "vcpu": new.vcpu - pod.vcpu,
        "memory_mb": new.memory_mb - pod.memory_mb,
        "disk_gb": new.disk_gb - pod.disk_gb,
    }
    _check_quota(pod.tenant, pods=0, memory_mb=delta["memory_mb"])
    if not node.fits(pods=0, **{k: max(v, 0) for k, v in delta.items()}):
        raise Conflict(f"Node {node.hostname} has no room for the plan {new.name!r}.", code="no_capacity")
    _reserve(node, pods=0, **delta)
    pods.transition(
        pod,
        PodStatus.RESIZING,
        "cloudpod.resize",
        actor=actor,
        plan=new.name,
        vcpu=new.vcpu,
        memory_mb=new.memory_mb,
        disk_gb=new.disk_gb,
        pids=new.pids,
    )
    pods.enqueue(pod, "cloudpod.resize", actor=actor)
    return pod


def pod_suspend(*, pod: CloudPod, actor=None) -> CloudPod:
    return pods.move(pod, "suspend", actor=actor)


def pod_resume(*, pod: CloudPod, actor=None) -> CloudPod:
    return pods.move(pod, "resume", actor=actor)


def pod_restart(*, pod: CloudPod, actor=None) -> CloudPod:
    """Stop and start the pod's container again (what it wrote is kept): a running pod only."""
    return pods.move(pod, "restart", actor=actor)


def pod_delete(*, pod: CloudPod, actor=None) -> CloudPod:
    return pods.move(pod, "delete", actor=actor)


# --- convergence (job handlers call this with the pod row locked) -----------------------------


def pod_spec(pod: CloudPod) -> PodSpec:
    return PodSpec(
        id=pod.container_id,
        image=pod.image,
        vcpu=float(pod.vcpu),
        memory_mb=pod.memory_mb,
        disk_gb=pod.disk_gb,
        pids=pod.pids,
    )


def pod_converge(*, pod: CloudPod, job_type: str) -> dict:
    """Make the node match the pod's wanted state. Must run inside a transaction holding the
    pod's row lock (``pods.locked``), so two jobs of one pod never act on the node at once."""
    wanted = pods.wanted(pod, job_type)
    if wanted is None:  # an error pod this job has no target for, or a deleted one
        return {"skipped": pod.status}
    driver = driver_for(pod.node)
    if wanted == PodStatus.DELETING:
        result = driver.pod_delete(pod.container_id)
        node = locks.node(pod.node_id, any_tenant=True)
        _reserve(node, vcpu=-pod.vcpu, memory_mb=-pod.memory_mb, disk_gb=-pod.disk_gb, pods=-1)
        pods.converged(pod, PodStatus.DELETED, deleted_at=timezone.now())
        return {"state": "absent", "existed": result.get("existed")}

    state = driver.pod_state(pod.container_id)
    created = False
    if state not in ("running", "paused"):
        driver.pod_create(pod_spec(pod))  # absent, created or stopped: (re)create from the current figures
        created = True
        state = "running"
    elif wanted == PodStatus.RESIZING or job_type == "cloudpod.resize":
        driver.pod_update(pod_spec(pod))
    elif job_type == "cloudpod.restart" and wanted == PodStatus.RUNNING and state == "running":
        driver.pod_restart(pod_spec(pod))
    if wanted == PodStatus.SUSPENDED:
        if state != "paused":
            driver.pod_pause(pod.container_id)
        final = PodStatus.SUSPENDED
    else:
        if state == "paused":
            driver.pod_resume(pod.container_id)
        final = PodStatus.RUNNING
    pods.converged(pod, final)
    return {"state": "paused" if final == PodStatus.SUSPENDED else "running", "created": created}
