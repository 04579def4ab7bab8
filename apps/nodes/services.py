"""Writes on nodes: create (secret shown once), update, delete, secret and certificate rotation,
heartbeats and going offline."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.tenancy.scoping import all_tenants

from . import agent_secret
from .drivers import AgentDriver, NodeError, driver_for
from .models import Node, NodeStatus, Transport

CAPACITY = ("vcpu", "memory_mb", "disk_gb", "max_pods")


def _save(node: Node) -> None:
    node.full_clean(exclude=["tenant"], validate_unique=False)
    try:
        with transaction.atomic():
            node.save()
    except IntegrityError as exc:
        raise InvalidInput("A node with this hostname exists already.", field="hostname") from exc


@transaction.atomic
def node_create(*, tenant, data: dict, actor=None) -> tuple[Node, str | None]:
    """Returns the node and, for the agent transport, its secret (this is the only time it is shown)."""
    data = dict(data)
    capacity = data.pop("capacity", {})
    node = Node(tenant=tenant, **data, **capacity)
    node.secret_salt = agent_secret.new_salt()
    _save(node)  # the secret derives from the primary key, known only now
    secret = agent_secret.derive(node)
    node.secret_hash = Node.hash_secret(secret)
    node.save(update_fields=["secret_hash", "updated_at"])
    audit.created(node, "node.create", actor=actor)
    return node, secret if node.transport == Transport.AGENT else None


@transaction.atomic
def node_update(*, node: Node, data: dict, actor=None) -> Node:
    node = Node.objects.select_for_update().get(pk=node.pk)
    data = dict(data)
    capacity = data.pop("capacity", None) or {}
    if data.get("status") == NodeStatus.OFFLINE:
        raise InvalidInput("A node goes offline by itself when its heartbeats stop.", field="status")
    with audit.change(node, "node.update", actor=actor):
        for field, value in {**data, **capacity}.items():
            setattr(node, field, value)
        if (
            node.vcpu < node.allocated_vcpu
            or node.memory_mb < node.allocated_memory_mb
            or node.disk_gb < node.allocated_disk_gb
            or node.max_pods < node.allocated_pods
        ):
            raise Conflict("The capacity cannot be set below what is allocated on this node.")
        _save(node)
    return node


@transaction.atomic
def node_delete(*, node: Node, actor=None) -> None:
    node = Node.objects.select_for_update().get(pk=node.pk)
    if node.allocated_pods:
        raise Conflict(f"This node still holds {node.allocated_pods} pod(s); delete or move them first.")
    audit.deleted(node, "node.delete", actor=actor)
    node.delete()


MAX_GRACE = 7 * 24 * 3600


@transaction.atomic
def node_rotate_secret(*, node: Node, actor=None, grace: int | None = None) -> str:
    """A new secret (answered this once). The current one stays valid ``grace`` seconds (default
    ``MPANEL_AGENT_SECRET_GRACE``) while the agent is given the new one: the panel signs with both
    and accepts either; then only the new one. ``grace=0`` ends the old one now (a leaked secret).
    Rotating again during a grace drops the oldest secret at once: at most two are ever valid."""
    grace = settings.MPANEL_AGENT_SECRET_GRACE if grace is None else grace
    if not 0 <= grace <= MAX_GRACE:
        raise InvalidInput(f"Between 0 and {MAX_GRACE} seconds.", field="grace_seconds")
    node = Node.objects.select_for_update().get(pk=node.pk)
    before = node.secret_previous_until
    if grace and node.secret_salt:
        node.secret_salt_previous = node.secret_salt
        node.secret_previous_until = timezone.now() + timedelta(seconds=grace)
    else:
        node.secret_salt_previous, node.secret_previous_until = "", None
    node.secret_salt = agent_secret.new_salt()
    secret = agent_secret.derive(node)
    node.secret_hash = Node.hash_secret(secret)
    node.save(update_fields=["secret_salt", "secret_hash", "secret_salt_previous", "secret_previous_until",
                             "updated_at"])  # fmt: skip
    audit.record(action="node.rotate_secret", obj=node, changes={"secret_previous_until": [before,
                 node.secret_previous_until]}, **audit.by(actor))  # fmt: skip
    return secret


@transaction.atomic
def node_rotate_certificate(*, node: Node, fingerprint: str, actor=None) -> Node:
    """Accept the node's next certificate key (``python -m agent rotate-cert`` printed its pin)
    beside the current one. The first heartbeat that finds the node presenting it makes it the
    only pin (``node_heartbeat``)."""
    node = Node.objects.select_for_update().get(pk=node.pk)
    if node.transport != Transport.AGENT:
        raise InvalidInput("Only an agent node has a certificate.", field="tls_fingerprint")
    with audit.change(node, "node.rotate_certificate", actor=actor):
        node.tls_fingerprint_next = fingerprint
        _save(node)
        if node.tls_fingerprint_next == node.tls_fingerprint:
            raise InvalidInput("This is the pinned certificate already.", field="tls_fingerprint")
    return node


def _promote_certificate(node: Node, presented: str | None) -> list[str]:
    """Under the node's lock: the node serves its next key now, so the old pin is dropped."""
    if not (presented and node.tls_fingerprint_next and presented == node.tls_fingerprint_next):
        return []
    before = node.tls_fingerprint
    node.tls_fingerprint, node.tls_fingerprint_next = presented, ""
    audit.record(action="node.certificate_rotated", obj=node, tenant=node.tenant_id, actor=None,
                 changes={"tls_fingerprint": [before, presented]})  # fmt: skip
    return ["tls_fingerprint", "tls_fingerprint_next"]


def node_heartbeat(*, node: Node) -> bool:
    """Ask the node how it is (outside any transaction: it may be slow); record the answer."""
    presented = None
    try:
        driver = driver_for(node, timeout=settings.MPANEL_NODE_READ_TIMEOUT)
        report = driver.heartbeat()
        presented = driver.presented if isinstance(driver, AgentDriver) else None
        error = ""
    except NodeError as exc:
        report, error = None, exc.message
    with transaction.atomic():
        node = Node.all_tenants.select_for_update().get(pk=node.pk)
        if report is None:
            node.last_error = error[:2000]
            node.save(update_fields=["last_error", "updated_at"])
            return False
        node.last_heartbeat_at = timezone.now()
        node.reported = report
        node.last_error = ""
        fields = ["last_heartbeat_at", "reported", "last_error", "updated_at"]
        fields += _promote_certificate(node, presented)
        if node.status == NodeStatus.OFFLINE:
            node.status = node.status_before_offline or NodeStatus.ACTIVE
            node.status_before_offline = ""
            fields += ["status", "status_before_offline"]
            audit.record(
                action="node.online",
                obj=node,
                tenant=node.tenant_id,
                actor=None,
                changes={"status": [NodeStatus.OFFLINE, node.status]},
            )
        node.save(update_fields=fields)
    return True


def nodes_mark_offline(*, now=None) -> int:
    """Nodes silent for longer than ``MPANEL_NODE_OFFLINE_AFTER`` seconds go offline."""
    now = now or timezone.now()
    silent_since = now - timedelta(seconds=settings.MPANEL_NODE_OFFLINE_AFTER)
    count = 0
    with all_tenants(), transaction.atomic():
        silent = (
            Node.all_tenants.select_for_update(skip_locked=True)
            .exclude(status=NodeStatus.OFFLINE)
            .filter(
                Q(last_heartbeat_at__lt=silent_since) | Q(last_heartbeat_at__isnull=True, created_at__lt=silent_since)
            )
        )
        for node in silent:
            before = node.status
            node.status_before_offline = before
            node.status = NodeStatus.OFFLINE
            node.save(update_fields=["status", "status_before_offline", "updated_at"])
            audit.record(
                action="node.offline",
                obj=node,
                tenant=node.tenant_id,
                actor=None,
                changes={"status": [before, "offline"]},
            )
            count += 1
    return count


def heartbeat_all() -> dict:
    """The periodic task: every node is asked for a heartbeat, then the silent ones go offline."""
    ok = failed = 0
    with all_tenants():
        nodes = list(Node.all_tenants.exclude(status=NodeStatus.MAINTENANCE))
    for node in nodes:
        if node_heartbeat(node=node):
            ok += 1
        else:
            failed += 1
    return {"ok": ok, "failed": failed, "offline": nodes_mark_offline()}


def is_reachable(node: Node) -> bool:
    """False for a node the panel must not trust: offline, or silent past the threshold."""
    if node.status == NodeStatus.OFFLINE:
        return False
    if node.last_heartbeat_at is None:
        return True  # never asked yet (embedded default without beat): ask the node itself
    limit = timezone.now() - timedelta(seconds=settings.MPANEL_NODE_OFFLINE_AFTER)
    return node.last_heartbeat_at >= limit
