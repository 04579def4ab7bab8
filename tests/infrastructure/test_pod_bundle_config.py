"""The pod start's node side (issue 21, fifth round): the bundle's config made from the ``runc spec``
template parsed once per node runtime is, byte for byte, what the config made from a fresh read was."""

from __future__ import annotations

import copy
import json

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
