"""The pod start's fast paths (issue 21) keep runc's answers and each pod's own rootfs: a spare copy of the
image renamed into a bundle is that pod's alone, and the state read from runc's folder is ``runc state``'s."""

from __future__ import annotations

import json
import time

from agent.runtime import NodeRuntime, PodSpec
from tests.pods_support import node_root  # noqa: F401  (fixture)


def _runc_status(runtime: NodeRuntime, container_id: str) -> str:
    result = runtime._runc("state", container_id, check=False)
    return json.loads(result.stdout)["status"] if result.returncode == 0 else "absent"


def _status(runtime: NodeRuntime, container_id: str) -> str:
    state = runtime._state(container_id)
    return state["status"] if state else "absent"


def test_pods_from_spares_have_their_own_rootfs(node_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MPANEL_POD_SPARES", "2")
    monkeypatch.setenv("MPANEL_POD_ROOTFS", "copy")  # the spares are the copy mode's
    runtime = NodeRuntime(node_root)
    runtime.pod_create(PodSpec(id="first", memory_mb=64))  # builds the image, copied synchronously
    assert runtime.refill_spares("busybox") in (0, 1, 2)
    deadline = time.monotonic() + 60
    while len([n for n in (runtime.spares_dir("busybox")).iterdir() if not n.name.startswith(".")]) < 2:
        assert time.monotonic() < deadline, "the spares were not made"
        time.sleep(0.05)
    spares = {p.name for p in runtime.spares_dir("busybox").iterdir() if not p.name.startswith(".")}
    a = runtime.pod_create(PodSpec(id="a", memory_mb=64))
    b = runtime.pod_create(PodSpec(id="b", memory_mb=64))
    assert a["state"] == b["state"] == "running"
    left = {p.name for p in runtime.spares_dir("busybox").iterdir() if not p.name.startswith(".")}
    assert spares - left  # the ready copies were taken (refills get new names)
    rootfs_a, rootfs_b = runtime.bundle_dir("a") / "rootfs", runtime.bundle_dir("b") / "rootfs"
    assert (rootfs_a / "bin" / "busybox").exists() and (rootfs_b / "bin" / "busybox").exists()
    (rootfs_a / "etc" / "hostname").write_text("changed-by-a\n")
    (rootfs_a / "root" / "mine").write_text("a")
    assert (rootfs_b / "etc" / "hostname").read_text() == "cloudpod\n"
    assert not (rootfs_b / "root" / "mine").exists()
    image = runtime.images_dir / "busybox" / "rootfs"
    assert (image / "etc" / "hostname").read_text() == "cloudpod\n" and not (image / "root" / "mine").exists()
    assert rootfs_a.stat().st_ino != rootfs_b.stat().st_ino
    assert (rootfs_a / "bin" / "busybox").stat().st_ino != (rootfs_b / "bin" / "busybox").stat().st_ino
    runtime.pod_delete("a")
    assert not runtime.bundle_dir("a").exists() and (rootfs_b / "bin" / "busybox").exists()


def test_the_state_read_from_runcs_folder_is_runc_states(node_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MPANEL_POD_SPARES", "0")
    runtime = NodeRuntime(node_root)
    assert _status(runtime, "nothing") == "absent"
    runtime.pod_create(PodSpec(id="live", memory_mb=64))
    runtime.pod_create(PodSpec(id="done", memory_mb=64, args=["/bin/true"]))
    deadline = time.monotonic() + 30
    while _runc_status(runtime, "done") != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _status(runtime, "live") == _runc_status(runtime, "live") == "running"
    assert _status(runtime, "done") == "stopped"
    runtime.pod_pause("live")
    assert _status(runtime, "live") == _runc_status(runtime, "live") == "paused"
    runtime.pod_resume("live")
    assert _status(runtime, "live") == _runc_status(runtime, "live") == "running"
    assert runtime.pod_state("live")["pid"] == json.loads(runtime._runc("state", "live").stdout)["pid"]
    runtime.pod_delete("live")
    assert _status(runtime, "live") == _runc_status(runtime, "live") == "absent"
