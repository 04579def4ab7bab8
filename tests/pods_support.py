"""Fixtures and helpers for node and CloudPod tests on a real runc.

Every test gets a node root of its own (bundles, images and runc's state under ``tmp_path``), so
container ids never collide between tests, and every container left there is removed with
``runc delete -f`` when the test ends, whatever happened.
"""

from __future__ import annotations

import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from agent import rootfs
from agent.runtime import NodeRuntime
from apps.cloudpods.models import CloudPod, PodStatus
from apps.nodes.models import Node


@pytest.fixture
def node_root(tmp_path, settings, monkeypatch):
    if shutil.which("runc") is None or not Path("/bin/busybox").exists():
        pytest.fail("runc and busybox-static are needed: run the tests with `make test` (it installs them)")
    root = tmp_path / "node"
    settings.MPANEL_NODE_ROOT = root
    monkeypatch.setenv("MPANEL_NODE_ROOT", str(root))  # for worker processes started by this test
    yield root
    cleanup_containers(root)


def cleanup_containers(root: Path) -> None:
    stop_containers(root)
    rootfs.unmount_under(root)  # the pods' overlay roots: a mount must not outlive its folder
    shutil.rmtree(root, ignore_errors=True)


def stop_containers(root: Path) -> None:
    """``runc delete -f`` every container of the node root ``root``."""
    state = root / "runc"
    if state.exists():
        runtime = NodeRuntime(root)
        for container in runtime.pod_list():
            subprocess.run(["runc", "--root", str(state), "delete", "-f", container["id"]], capture_output=True)


def node_in(fx, hostname: str = "node-1", **extra) -> Node:
    values = {
        "vcpu": Decimal("1000"),
        "memory_mb": 1_000_000,
        "disk_gb": 100_000,
        "max_pods": 10_000,
        "roles": ["pods"],
        **extra,
    }
    with fx.scope():
        node = Node.objects.filter(hostname=hostname).first()
        return node or Node.objects.create(tenant=fx.tenant, hostname=hostname, **values)


def pod_in(fx, seq, node: Node | None = None, **extra) -> CloudPod:
    node = node or node_in(fx)
    values = {"status": PodStatus.RUNNING, "plan": "pod-xs", "memory_mb": 128, "disk_gb": 1, "pids": 64, **extra}
    with fx.scope():
        pod = CloudPod.objects.create(
            tenant=fx.tenant,
            name=f"pod-{seq}",
            node=node,
            container_id=f"mp-test-{seq}-{fx.tenant.pk.hex[:8]}",
            vcpu=Decimal("0.5"),
            **values,
        )
        Node.objects.filter(pk=node.pk).update(
            allocated_vcpu=node.allocated_vcpu + pod.vcpu,
            allocated_memory_mb=node.allocated_memory_mb + pod.memory_mb,
            allocated_disk_gb=node.allocated_disk_gb + pod.disk_gb,
            allocated_pods=node.allocated_pods + 1,
        )
        node.refresh_from_db()
    return pod


def memory_cgroup_limit(pid: int) -> int:
    """The memory limit of a process, read from its own memory cgroup (cgroup v1)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _num, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return int(Path(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read_text())
    raise AssertionError(f"no memory cgroup for pid {pid}")


def freezer_state(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _num, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            return Path(f"/sys/fs/cgroup/freezer{path}/freezer.state").read_text().strip()
    raise AssertionError(f"no freezer cgroup for pid {pid}")
