"""A pod's usage read straight from its cgroup files (issue 21) is what ``runc events --stats`` answers
for the same container, running and paused; a layout the reads do not know falls back to runc."""

from __future__ import annotations

import json
import time

import pytest

from agent import runtime as runtime_module
from agent.runtime import NodeRuntime, PodSpec
from tests.pods_support import node_root  # noqa: F401  (fixture)

MB = 1024 * 1024


def _both(runtime: NodeRuntime, container_id: str) -> tuple[dict, dict]:
    fast = runtime.pod_stats(container_id)
    empty = {"memory_limit_bytes": None, "memory_usage_bytes": None, "cpu_seconds": None, "pids": None}
    slow = runtime._runc_stats(container_id, {**runtime.pod_state(container_id), **empty})
    return fast, slow


def _alike(fast: dict, slow: dict) -> None:
    assert set(fast) == set(slow)
    for key in ("id", "state", "pid", "memory_limit_bytes", "pids"):
        assert fast[key] == slow[key], key
    assert all(type(fast[k]) is type(slow[k]) for k in fast)
    # Usage moves between two reads a few ms apart: the same figure, give or take what a shell uses.
    assert abs(fast["memory_usage_bytes"] - slow["memory_usage_bytes"]) <= 4 * MB
    assert abs(fast["cpu_seconds"] - slow["cpu_seconds"]) <= 0.5


def test_cgroup_reads_answer_what_runc_events_answers(node_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MPANEL_POD_SPARES", "0")
    runtime = NodeRuntime(node_root)
    runtime.pod_create(PodSpec(id="stats", memory_mb=96, vcpu=0.5, pids=48))
    # Some work inside the container, so that CPU and memory are not just the init's.
    runtime._runc("exec", "stats", "/bin/sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
    fast, slow = _both(runtime, "stats")
    assert fast["state"] == "running" and fast["memory_limit_bytes"] == 96 * MB
    assert fast["pids"] >= 1 and fast["cpu_seconds"] > 0 and fast["memory_usage_bytes"] > 0
    _alike(fast, slow)
    runtime.pod_pause("stats")
    fast, slow = _both(runtime, "stats")
    assert fast["state"] == "paused"
    _alike(fast, slow)
    runtime.pod_resume("stats")


def test_stopped_and_absent_pods_have_no_usage(node_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MPANEL_POD_SPARES", "0")
    runtime = NodeRuntime(node_root)
    runtime.pod_create(PodSpec(id="done", memory_mb=64, args=["/bin/true"]))
    deadline = time.monotonic() + 30
    while runtime.pod_state("done")["state"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    empty = {"memory_limit_bytes": None, "memory_usage_bytes": None, "cpu_seconds": None, "pids": None}
    assert runtime.pod_stats("done") == {"id": "done", "state": "stopped", "pid": None, **empty}
    assert runtime.pod_stats("nothing") == {"id": "nothing", "state": "absent", "pid": None, **empty}


def test_an_unknown_cgroup_layout_asks_runc(node_root, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MPANEL_POD_SPARES", "0")
    runtime = NodeRuntime(node_root)
    runtime.pod_create(PodSpec(id="other", memory_mb=64))
    state = json.loads((runtime.state_dir / "other" / "state.json").read_text())
    assert runtime_module._cgroup_stats(runtime.state_dir / "other") is not None
    asked = []
    real = NodeRuntime._runc_stats
    monkeypatch.setattr(NodeRuntime, "_runc_stats", lambda self, *a: asked.append(a) or real(self, *a))
    # A cgroup file that cannot be read (another runc's layout, a cgroup gone): runc answers.
    monkeypatch.setattr(runtime_module, "_cgroup_stats", lambda folder: None)
    answer = runtime.pod_stats("other")
    assert asked and answer["memory_limit_bytes"] == 64 * MB and answer["pids"] >= 1
    assert state["cgroup_paths"]  # the layout the fast path reads


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"memory.current": "4096\n", "memory.max": "max\n", "cpu.stat": "usage_usec 2500000\nuser_usec 1\n",
          "pids.current": "3\n"}, {"memory_usage_bytes": 4096, "memory_limit_bytes": 2**64 - 1,
                                   "cpu_seconds": 2.5, "pids": 3}),
        ({"memory.current": "4096\n", "memory.max": "67108864\n", "cpu.stat": "usage_usec 1234\n",
          "pids.current": "1\n"}, {"memory_usage_bytes": 4096, "memory_limit_bytes": 64 * MB,
                                   "cpu_seconds": 0.001, "pids": 1}),
        ({"memory.current": "4096\n", "memory.max": "max\n", "pids.current": "1\n"}, None),  # no cpu.stat
    ],
)  # fmt: skip
def test_cgroup_v2_files_read_as_runc_reads_them(tmp_path, files, expected):
    """A cgroup v2 (unified) group, as runc reads it: ``max`` is 2**64-1, CPU is ``usage_usec`` in µs."""
    group = tmp_path / "group"
    group.mkdir()
    for name, text in files.items():
        (group / name).write_text(text)
    (tmp_path / "state.json").write_text(json.dumps({"cgroup_paths": {"": str(group)}}))
    assert runtime_module._cgroup_stats(tmp_path) == expected
