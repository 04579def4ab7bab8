"""A pod's rootfs as an overlay of its image (agent/rootfs.py, issue 21): each pod writes only to its own
upper layer, the image stays as built, a node restart (the mount gone, the container stopped) mounts it
again for the pod's restart, its backup and its restore, and removing a pod leaves no mount behind.
All on a real runc and real overlay mounts."""

from __future__ import annotations

import os
import subprocess

import pytest

from agent import rootfs
from agent.backups import _merge_into, _source
from agent.errors import AgentError
from agent.runtime import NodeRuntime, PodSpec
from tests.pods_support import node_root  # noqa: F401  (fixture)


def _exec(runtime: NodeRuntime, container_id: str, *cmd: str) -> subprocess.CompletedProcess:
    return runtime._runc("exec", container_id, *cmd, check=False)


def _mounts_under(root) -> list[str]:
    prefix = str(root.resolve())
    with open("/proc/self/mountinfo") as info:
        return [line.split()[4] for line in info if line.split()[4].startswith(prefix)]


@pytest.fixture
def overlay(node_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MPANEL_POD_ROOTFS", "overlay")
    runtime = NodeRuntime(node_root)
    return runtime


def _restart_node(runtime: NodeRuntime, container_id: str) -> None:
    """What a node restart leaves: the container stopped, its overlay no longer mounted."""
    runtime._runc("kill", container_id, "KILL", check=False)
    runtime._runc("delete", "-f", container_id, check=False)
    rootfs.unmount(runtime.bundle_dir(container_id) / "rootfs")
    assert not os.path.ismount(runtime.bundle_dir(container_id) / "rootfs")


def test_each_pod_writes_to_its_own_layer_and_the_image_stays(overlay):
    runtime = overlay
    runtime.pod_create(PodSpec(id="a", memory_mb=64, vcpu=0.5, pids=32))
    runtime.pod_create(PodSpec(id="b", memory_mb=64, vcpu=0.5, pids=32))
    a, b = runtime.bundle_dir("a"), runtime.bundle_dir("b")
    assert rootfs.is_overlay(a) and os.path.ismount(a / "rootfs") and os.path.ismount(b / "rootfs")
    assert not runtime.spares_dir("busybox").exists()  # no copy made ahead: nothing to copy
    assert _exec(runtime, "a", "sh", "-c", "echo changed-by-a > /etc/hostname; echo a > /root/mine").returncode == 0
    assert (a / "rootfs" / "etc" / "hostname").read_text() == "changed-by-a\n"
    assert (a / "upper" / "root" / "mine").read_text() == "a\n"  # the write landed in a's layer
    assert _exec(runtime, "b", "cat", "/etc/hostname").stdout == "cloudpod\n"
    assert _exec(runtime, "b", "test", "-e", "/root/mine").returncode != 0
    image = runtime.images_dir / "busybox" / "rootfs"
    assert (image / "etc" / "hostname").read_text() == "cloudpod\n" and not (image / "root" / "mine").exists()
    # A file of the image removed in one pod is gone for that pod only.
    assert _exec(runtime, "a", "rm", "/bin/ls").returncode == 0
    assert (image / "bin" / "ls").is_symlink() and _exec(runtime, "b", "test", "-e", "/bin/ls").returncode == 0

    runtime.pod_delete("a")
    assert not a.exists() and not _mounts_under(a)
    assert (b / "rootfs" / "bin" / "busybox").exists() and (image / "bin" / "ls").is_symlink()
    runtime.pod_delete("b")
    assert _mounts_under(runtime.bundles) == []


def test_a_node_restart_mounts_the_layer_again_and_keeps_what_the_pod_wrote(overlay):
    runtime = overlay
    spec = PodSpec(id="kept", memory_mb=64, vcpu=0.5, pids=32)
    runtime.pod_create(spec)
    assert _exec(runtime, "kept", "sh", "-c", "echo mine > /data.txt").returncode == 0
    _restart_node(runtime, "kept")
    assert not (runtime.bundle_dir("kept") / "rootfs" / "data.txt").exists()  # the bare mount point

    assert runtime.pod_create(spec)["state"] == "running"
    assert os.path.ismount(runtime.bundle_dir("kept") / "rootfs")
    assert _exec(runtime, "kept", "cat", "/data.txt").stdout == "mine\n"


def test_backup_and_restore_read_the_mounted_layer_after_a_restart(overlay):
    runtime = overlay
    runtime.pod_create(PodSpec(id="bk", memory_mb=64, vcpu=0.5, pids=32))
    assert _exec(runtime, "bk", "sh", "-c", "mkdir -p /srv && echo one > /srv/one.txt").returncode == 0
    _restart_node(runtime, "bk")

    # What a backup reads (agent/backups._source) is the mounted merged view, not the empty folder.
    live = _source(runtime, {"source": {"kind": "pod", "pod": "bk"}})["path"]
    assert os.path.ismount(live) and (live / "srv" / "one.txt").read_text() == "one\n"
    assert (live / "bin" / "busybox").exists()

    # A restore stages on the node's disk and merges into the overlay: another filesystem, so the
    # renames become copies (owners and modes kept), and the result is the staged tree.
    staged = runtime.bundle_dir("bk") / ".staged"
    subprocess.run(["cp", "-a", str(live), str(staged)], check=True)
    (staged / "srv" / "one.txt").write_text("restored\n")
    (staged / "srv" / "new.txt").write_text("new\n")
    os.chmod(staged / "srv" / "new.txt", 0o600)
    (staged / "etc" / "hostname").unlink()
    (live / "srv" / "extra.txt").write_text("written after the backup\n")
    _merge_into(staged, live)
    assert (live / "srv" / "one.txt").read_text() == "restored\n"
    assert (live / "srv" / "new.txt").stat().st_mode & 0o777 == 0o600
    assert not (live / "etc" / "hostname").exists() and not (live / "srv" / "extra.txt").exists()
    assert (runtime.images_dir / "busybox" / "rootfs" / "etc" / "hostname").exists()  # the image untouched
    assert runtime.pod_create(PodSpec(id="bk", memory_mb=64, vcpu=0.5, pids=32))["state"] == "running"
    assert _exec(runtime, "bk", "cat", "/srv/new.txt").stdout == "new\n"


def test_copy_mode_and_a_refused_mount_give_each_pod_a_whole_copy(node_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MPANEL_POD_SPARES", "0")
    monkeypatch.setenv("MPANEL_POD_ROOTFS", "copy")
    runtime = NodeRuntime(node_root)
    assert runtime.rootfs_mode() == {"mode": "copy", "reason": "MPANEL_POD_ROOTFS=copy"}
    runtime.pod_create(PodSpec(id="copied", memory_mb=64, vcpu=0.5, pids=32))
    bundle = runtime.bundle_dir("copied")
    assert not rootfs.is_overlay(bundle) and not os.path.ismount(bundle / "rootfs")
    assert (bundle / "rootfs" / "bin" / "busybox").stat().st_ino != (
        runtime.images_dir / "busybox" / "rootfs" / "bin" / "busybox"
    ).stat().st_ino

    # A kernel that refuses the mount: the pod is made as a copy, and this node does not ask again.
    monkeypatch.setenv("MPANEL_POD_ROOTFS", "overlay")
    refusing = NodeRuntime(node_root)
    assert refusing.rootfs_mode() == {"mode": "overlay"}
    calls = []

    def refuse(lower, bundle):
        calls.append(bundle)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(rootfs, "_mount", refuse)
    for name in ("r1", "r2"):
        assert refusing.pod_create(PodSpec(id=name, memory_mb=64, vcpu=0.5, pids=32))["state"] == "running"
        made = refusing.bundle_dir(name)
        assert not rootfs.is_overlay(made) and not (made / "work").exists()
        assert (made / "rootfs" / "bin" / "busybox").exists()
    assert len(calls) == 1
    # The operator sees in the node's heartbeat why it copies.
    assert refusing.heartbeat()["pod_rootfs"] == {
        "mode": "copy",
        "reason": "overlay refused: [Errno 1] Operation not permitted",
    }


@pytest.mark.parametrize("spec", ["not json", "{}", '{"image": "../x"}', '{"image": 3}'])
def test_a_bundle_whose_spec_names_no_image_is_an_agent_error_not_a_crash(overlay, spec):
    runtime = overlay
    runtime.pod_create(PodSpec(id="sp", memory_mb=64, vcpu=0.5, pids=32))
    _restart_node(runtime, "sp")
    (runtime.bundle_dir("sp") / "spec.json").write_text(spec)
    with pytest.raises(OSError, match="names no image"):
        rootfs.ensure(runtime.bundle_dir("sp"), runtime.images_dir)
    with pytest.raises(AgentError, match="cannot be mounted"):
        runtime.pod_create(PodSpec(id="sp", memory_mb=64, vcpu=0.5, pids=32))
    with pytest.raises(AgentError, match="cannot be mounted"):
        _source(runtime, {"source": {"kind": "pod", "pod": "sp"}})


def test_unmount_under_detaches_every_mount_below_a_root(overlay):
    runtime = overlay
    for name in ("u1", "u2"):
        runtime.pod_create(PodSpec(id=name, memory_mb=64, vcpu=0.5, pids=32))
    for name in ("u1", "u2"):
        runtime._runc("delete", "-f", name, check=False)
    assert len(_mounts_under(runtime.root)) == 2
    assert rootfs.unmount_under(runtime.root) == 2
    assert _mounts_under(runtime.root) == []
