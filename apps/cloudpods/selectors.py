"""Reads about pods that are more than a filter: the live runtime facts from the node."""

from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from django.core.cache import cache

from apps.nodes.drivers import NodeError, PodRuntime, driver_for
from apps.nodes.models import Transport
from apps.nodes.services import is_reachable

from .models import CloudPod, PodStatus

UNKNOWN = asdict(PodRuntime(state="unknown"))
ABSENT = asdict(PodRuntime(state="absent"))


def pod_runtime(pod: CloudPod) -> dict:
    """State and usage read from the node (runc's state and the container's cgroup files), cached
    for ``CLOUDPOD_RUNTIME_CACHE_SECONDS`` when the node is an agent's (a request over the network).
    A local node's figures are read in-process from a few files, less than the cache's own round
    trips (a read and a write of the embedded default's database cache), so they are read each
    time. A node that is offline or silent gives ``unknown``: the panel does not claim a pod runs
    when it cannot know."""
    if pod.status == PodStatus.DELETED:
        return dict(ABSENT)
    if not is_reachable(pod.node):
        return dict(UNKNOWN)
    local = pod.node.transport == Transport.LOCAL
    # A change of the pod (a job finished) changes updated_at and so the key: no stale state after it.
    key = f"cloudpod:runtime:{pod.pk}:{pod.updated_at.timestamp()}"
    cached = None if local else cache.get(key)
    if cached is not None:
        return cached
    try:
        runtime = asdict(driver_for(pod.node, timeout=settings.MPANEL_NODE_READ_TIMEOUT).pod_stats(pod.container_id))
    except NodeError:
        return dict(UNKNOWN)
    if not local:
        cache.set(key, runtime, settings.CLOUDPOD_RUNTIME_CACHE_SECONDS)
    return runtime
