"""The pod start's node side (issue 21, fifth round): a pod that finds no spare ready while one is being
copied takes that copy instead of copying the image beside it, and the bundle's config made from the
template parsed once is what the config made from a fresh ``runc spec`` was."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import agent.runtime as agent_runtime
from agent.runtime import NodeRuntime, PodSpec
from tests.pods_support import node_root  # noqa: F401  (fixture)


def _slow_config(runtime: NodeRuntime, spec: PodSpec) -> dict:
    """The config as it was made before the template was kept in memory: a fresh read of ``runc spec``'s
    file, changed in place."""
    config = json.loads((runtime.root / "spec-template.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = list(spec.args)
    config["process"]["env"] = ["PATH=/bin", "HOME=/root", "TERM=dumb"]
    config["hostname"] = spec.id[:63]
    config["root"]["readonly"] = False
    config["linux"].setdefault("resources", {}).update(runtime._resources(spec))
    return config


def test_the_config_from_the_kept_template_is_the_fresh_one(node_root):  # noqa: F811
    runtime = NodeRuntime(node_root)
    specs = [
        PodSpec(id="one", memory_mb=64, vcpu=0.5, pids=32),
        PodSpec(id="two", memory_mb=512, vcpu=2, pids=256, args=["/bin/sleep", "60"]),
    ]
    template = copy.deepcopy(runtime._spec_template())
    for spec in specs:
        fast = runtime._config(spec, node_root)
        slow = _slow_config(runtime, spec)
        assert fast == slow
        # Byte for byte as written into the bundle (the keys' order included).
        assert json.dumps(fast, indent=1) == json.dumps(slow, indent=1)
    assert runtime._spec_template() == template  # no pod's figures were written into the template
    first, second = (runtime._config(s, node_root) for s in specs)
    assert first["linux"]["resources"]["memory"]["limit"] == 64 * 1024 * 1024
    assert second["linux"]["resources"]["memory"]["limit"] == 512 * 1024 * 1024
    assert first["process"]["args"] != second["process"]["args"]


def test_a_pod_takes_the_spare_being_copied_rather_than_copying_its_own(node_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MPANEL_POD_SPARES", "1")
    runtime = NodeRuntime(node_root)
    runtime.image_rootfs("busybox")
    copies: list[Path] = []
    copying = threading.Event()
    real_copy = agent_runtime._copy_tree

    def slow_copy(source: Path, target: Path) -> None:
        copies.append(target)
        copying.set()
        time.sleep(0.5)  # the refill's copy is still under way when the pod asks for one
        real_copy(source, target)

    monkeypatch.setattr(agent_runtime, "_copy_tree", slow_copy)
    runtime.refill_spares_later("busybox")
    assert copying.wait(10)
    answer = runtime.pod_create(PodSpec(id="waits", memory_mb=64))
    assert answer["created"] is True and answer["state"] == "running"
    # One copy so far, the refill's, and the pod runs on it: none was made into the bundle.
    assert not [c for c in copies if runtime.bundles in c.parents]
    assert (runtime.bundle_dir("waits") / "rootfs" / "bin" / "busybox").exists()
    assert all(runtime.spares_dir("busybox") in c.parents for c in copies)
    # The refill goes on: the next pod's spare is made after this one took the first.
    deadline = time.monotonic() + 60
    while not [n for n in runtime.spares_dir("busybox").iterdir() if not n.name.startswith(".")]:
        assert time.monotonic() < deadline, "no spare was made after the pod took one"
        time.sleep(0.05)


def test_with_no_refill_under_way_a_pod_copies_the_image_itself(node_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MPANEL_POD_SPARES", "0")
    runtime = NodeRuntime(node_root)
    copies: list[Path] = []
    real_copy = agent_runtime._copy_tree

    def counted(source: Path, target: Path) -> None:
        copies.append(target)
        real_copy(source, target)

    monkeypatch.setattr(agent_runtime, "_copy_tree", counted)
    started = time.monotonic()
    assert runtime.pod_create(PodSpec(id="alone", memory_mb=64))["state"] == "running"
    assert time.monotonic() - started < 30  # it did not wait for a spare nobody makes
    assert len(copies) == 1 and runtime.bundles in copies[0].parents
