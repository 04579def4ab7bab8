"""Helpers of `make bench` and `make load`: gunicorn on loopback, wrk against it, memory of its workers.

Why wrk (Debian's package) and not locust: the load generator shares the 2 cores with the server, and
wrk is a small C program (an event loop per thread) that takes a fraction of what a Python generator
would; it keeps its own latency histogram (p50/p95/p99 from every request, not a sample); and its Lua
hooks are enough to mix requests. No Python dependency is added.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "latency_ms": {"p50": %.2f, "p95": %.2f, "p99": %.2f, "max": %.2f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """mPanel under gunicorn, 2 sync workers (the best layout on 2 cores), bench settings."""

    def __init__(self, workdir: Path, workers: int = 2, settings: str = "bench.settings"):
        self.port = free_port()
        self.workdir = workdir
        self.workers = workers
        self.settings = settings
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Gunicorn:
        env = dict(os.environ, DJANGO_SETTINGS_MODULE=self.settings, LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
        log = open(self.workdir / "gunicorn.log", "ab")  # noqa: SIM115 - written by gunicorn until stopped
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "mpanel.wsgi:application", "--bind",
             f"127.0.0.1:{self.port}", "--workers", str(self.workers), "--worker-class", "sync",
             "--backlog", "2048", "--timeout", "120", *self.control()],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.workdir / "gunicorn.log").read_text()[-3000:])
            try:
                urllib.request.urlopen(f"{self.url}/bench/fixed", timeout=2).read()  # noqa: S310 - loopback
                if len(self.worker_pids()) == self.workers:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not start: " + (self.workdir / "gunicorn.log").read_text()[-3000:])

    def control(self) -> list[str]:
        """gunicorn 24+ opens a control socket at one fixed path by default: not for a throwaway server."""
        out = subprocess.run([str(Path(sys.executable).parent / "gunicorn"), "--help"], capture_output=True, text=True)
        return ["--no-control-socket"] if "--no-control-socket" in out.stdout else []

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def rss_mb(self) -> dict:
        """Resident memory of the master and of each worker (VmRSS from /proc), in MiB."""

        def rss(pid: int) -> float:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
            return 0.0

        workers = [rss(pid) for pid in self.worker_pids()]
        return {"master": rss(self.proc.pid), "workers": workers, "workers_total": round(sum(workers), 1)}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wrk(url: str, *, lua: str = "", seconds: int = 10, connections: int = 4, threads: int = 1,
        workdir: Path) -> dict:  # fmt: skip
    """Run wrk with ``lua`` (request hooks) plus our ``done`` hook; its summary as a dict."""
    script = workdir / f"wrk-{time.time_ns()}.lua"
    script.write_text(lua + "\n" + DONE_LUA)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "30s",
         "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON "))
    summary = json.loads(line[len("WRKJSON ") :])
    summary["requests_per_second"] = round(summary["requests"] / (summary["duration_us"] / 1e6), 1)
    summary["error_count"] = sum(summary["errors"].values())
    return summary


def machine() -> dict:
    """What the figures were measured on."""
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((x.split(":", 1)[1].strip() for x in cpu.splitlines() if x.startswith("Model name")), "?")
    mem_kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
    # The load average says how shared the machine was while measuring (ratios hold better than absolutes).
    return {"cpu": model, "nproc": os.cpu_count(), "ram_gib": round(mem_kb / 1024 / 1024, 1),
            "loadavg_1m_at_start": round(os.getloadavg()[0], 2)}  # fmt: skip


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM a process group we started (a Celery worker and its pool), SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def cpu_seconds(groups: dict[str, int]) -> dict[str, dict[int, float]]:
    """CPU time (user + system) used so far by this process, by each named process group (a worker
    and its pool, by its group id), and by every PostgreSQL and Redis process, per process id: where a
    benchmark's time goes when everything shares the same cores (``cpu_used`` takes two of these)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, dict[int, float]] = {name: {} for name in ["bench", *groups, "postgres", "redis"]}
    by_group = {pgid: name for name, pgid in groups.items()}
    own = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # After the command: state, ppid, pgrp, …; utime and stime are the 14th and 15th fields of the line.
        pid, pgrp, used = int(entry.name), int(fields[2]), (int(fields[11]) + int(fields[12])) / tick
        name = ("bench" if pid == own else by_group.get(pgrp)) or (
            "postgres" if comm == "postgres" else "redis" if comm.startswith("redis-server") else None
        )
        if name is not None:
            out[name][pid] = used
    return out


def cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds per name between two ``cpu_seconds``: of the processes alive at the second (one that
    exited in between is not counted: a short-lived one, an autovacuum worker, is missed)."""
    return {
        name: sum(used - before.get(name, {}).get(pid, 0.0) for pid, used in pids.items())
        for name, pids in after.items()
    }
