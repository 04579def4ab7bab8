"""What a node reports every interval: CPU, memory, disk, load and network read from /proc, pod usage,
and whether each of its services answers. Standard library only, like the rest of the agent.

A sample is ``[metric, ts, value]`` (``ts`` in unix seconds). Node metrics have fixed names
(``NODE_METRICS``); a pod's are ``pod.<container id>.<name>`` (``POD_METRICS``). CPU and network
are rates: they need two readings of the kernel's counters, so the collector keeps the previous
reading (in memory and, when given, in a state file, because the local node's reporter may run in
a different worker process each time) and, with none fresh enough, takes two readings a moment apart.

psutil would read the same files; /proc is all a Debian node has, and it keeps the agent free of
compiled dependencies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

NODE_METRICS = (
    "cpu.percent",
    "mem.total_bytes",
    "mem.used_bytes",
    "mem.percent",
    "disk.total_bytes",
    "disk.used_bytes",
    "disk.percent",
    "load.1",
    "load.5",
    "load.15",
    "net.rx_bytes_per_s",
    "net.tx_bytes_per_s",
)
POD_METRICS = ("cpu_percent", "memory_bytes", "memory_limit_bytes", "pids")
POD_METRIC_RE = re.compile(r"^pod\.[a-zA-Z0-9][a-zA-Z0-9_-]{0,127}\.(" + "|".join(POD_METRICS) + r")$")
SERVICES = ("nginx", "pdns", "postfix", "dovecot", "runc", "postgresql", "mariadb")
SHORT_WINDOW = 0.25  # seconds between two readings when no earlier one is fresh enough


def is_metric(name: object) -> bool:
    return isinstance(name, str) and (name in NODE_METRICS or bool(POD_METRIC_RE.match(name)))


# --- /proc ----------------------------------------------------------------------------------------


def read_cpu(proc: Path = Path("/proc")) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (first line of /proc/stat)."""
    fields = [int(v) for v in (proc / "stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user/nice
    return total - idle, total


def read_net(proc: Path = Path("/proc")) -> tuple[int, int]:
    """Bytes received and sent since boot by every interface but loopback (/proc/net/dev)."""
    rx = tx = 0
    for line in (proc / "net" / "dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            continue
        values = rest.split()
        rx += int(values[0])
        tx += int(values[8])
    return rx, tx


def read_memory(proc: Path = Path("/proc")) -> tuple[int, int]:
    """(total, used) bytes; used = total - MemAvailable (what the kernel could not hand out now)."""
    info = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            info[key] = int(parts[0]) * 1024
    total = info.get("MemTotal", 0)
    available = info.get("MemAvailable", info.get("MemFree", 0))
    return total, total - available


def read_load(proc: Path = Path("/proc")) -> tuple[float, float, float]:
    one, five, fifteen = (proc / "loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


class Collector:
    """Turns counter readings into samples; one per node process (or one state file)."""

    def __init__(self, disk_path: str | os.PathLike = "/", state_file: str | os.PathLike | None = None,
                 proc: str | os.PathLike = "/proc", max_gap: float = 900.0):  # fmt: skip
        self.disk_path = Path(disk_path)
        self.state_file = Path(state_file) if state_file else None
        self.proc = Path(proc)
        self.max_gap = max_gap  # an older reading is no base for a rate (the node slept, or rebooted)
        self._previous: dict | None = None

    def _reading(self) -> dict:
        busy, total = read_cpu(self.proc)
        rx, tx = read_net(self.proc)
        return {"time": time.time(), "cpu": [busy, total], "net": [rx, tx], "pods": {}}

    def _load_previous(self) -> dict | None:
        if self._previous is None and self.state_file and self.state_file.exists():
            try:
                self._previous = json.loads(self.state_file.read_text())
            except (OSError, ValueError):
                self._previous = None
        return self._previous

    def _save(self, reading: dict) -> None:
        self._previous = reading
        if self.state_file:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(reading))
            os.replace(tmp, self.state_file)

    def collect(self, pods: dict[str, dict] | None = None) -> list[list]:
        """Samples of this moment. ``pods``: container id → ``pod_stats`` answer (state, usage)."""
        now_reading = self._reading()
        previous = self._load_previous()
        if not previous or not 0 < now_reading["time"] - previous.get("time", 0) <= self.max_gap:
            previous = now_reading
            time.sleep(SHORT_WINDOW)
            now_reading = self._reading()
        elapsed = now_reading["time"] - previous["time"]
        ts = int(now_reading["time"])
        samples: list[list] = []
        busy = now_reading["cpu"][0] - previous["cpu"][0]
        total = now_reading["cpu"][1] - previous["cpu"][1]
        if total > 0 and busy >= 0:
            samples.append(["cpu.percent", ts, round(100.0 * busy / total, 2)])
        rx = now_reading["net"][0] - previous["net"][0]
        tx = now_reading["net"][1] - previous["net"][1]
        if elapsed > 0 and rx >= 0 and tx >= 0:  # counters reset (interface gone): no rate this time
            samples.append(["net.rx_bytes_per_s", ts, round(rx / elapsed, 1)])
            samples.append(["net.tx_bytes_per_s", ts, round(tx / elapsed, 1)])
        mem_total, mem_used = read_memory(self.proc)
        samples += [["mem.total_bytes", ts, mem_total], ["mem.used_bytes", ts, mem_used]]
        if mem_total:
            samples.append(["mem.percent", ts, round(100.0 * mem_used / mem_total, 2)])
        disk = shutil.disk_usage(self.disk_path if self.disk_path.exists() else "/")
        samples += [["disk.total_bytes", ts, disk.total], ["disk.used_bytes", ts, disk.used]]
        if disk.total:
            samples.append(["disk.percent", ts, round(100.0 * disk.used / disk.total, 2)])
        for name, value in zip(("load.1", "load.5", "load.15"), read_load(self.proc), strict=True):
            samples.append([name, ts, value])
        for container_id, stats in sorted((pods or {}).items()):
            samples += self._pod_samples(container_id, stats, ts, previous, now_reading)
        self._save(now_reading)
        return samples

    @staticmethod
    def _pod_samples(container_id: str, stats: dict, ts: int, previous: dict, reading: dict) -> list[list]:
        prefix = f"pod.{container_id}."
        if not POD_METRIC_RE.match(prefix + "pids"):
            return []
        out = []
        for key, metric in (("memory_usage_bytes", "memory_bytes"), ("memory_limit_bytes", "memory_limit_bytes"),
                            ("pids", "pids")):  # fmt: skip
            if isinstance(stats.get(key), int | float):
                out.append([prefix + metric, ts, stats[key]])
        cpu = stats.get("cpu_seconds")
        if isinstance(cpu, int | float):
            reading["pods"][container_id] = [reading["time"], cpu]
            before = previous.get("pods", {}).get(container_id)
            if before and reading["time"] > before[0] and cpu >= before[1]:
                out.append(
                    [prefix + "cpu_percent", ts, round(100.0 * (cpu - before[1]) / (reading["time"] - before[0]), 2)]
                )
        return out


# --- services ------------------------------------------------------------------------------------


def _pid_running(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (OSError, ValueError, IndexError):
        return False
    return pid > 0


def _state(up: bool, detail: str = "") -> dict:
    return {"state": "up" if up else "down", "detail": detail[:200]}


def _nginx(root: Path) -> dict:
    if not (os.environ.get("MPANEL_NGINX_BIN") or shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        return {"state": "absent", "detail": "nginx is not installed"}
    conf = Path(os.environ.get("MPANEL_NGINX_CONF") or root / "web" / "nginx.conf")
    if not conf.exists():
        return {"state": "down", "detail": f"no configuration at {conf}"}
    match = re.search(r"^\s*pid\s+([^;]+);", conf.read_text(), re.M)
    pid_file = Path(match.group(1).strip()) if match else Path("/run/nginx.pid")
    return _state(_pid_running(pid_file), str(pid_file))


def _pdns() -> dict:
    url, key = os.environ.get("MPANEL_PDNS_API_URL", ""), os.environ.get("MPANEL_PDNS_API_KEY", "")
    if not url or not key:
        return {"state": "unconfigured", "detail": "MPANEL_PDNS_API_URL is not set"}
    server = os.environ.get("MPANEL_PDNS_SERVER_ID") or "localhost"
    request = urllib.request.Request(f"{url.rstrip('/')}/api/v1/servers/{server}", headers={"X-API-Key": key})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return _state(response.status == 200, url)
    except (urllib.error.URLError, OSError) as exc:
        return _state(False, f"{url}: {exc}")


def _daemon(name: str, binary: str, pid_env: str, default_pid: str) -> dict:
    if not shutil.which(binary) and not Path(f"/usr/sbin/{binary}").exists():
        return {"state": "absent", "detail": f"{name} is not installed"}
    pid_file = Path(os.environ.get(pid_env) or default_pid)
    return _state(_pid_running(pid_file), str(pid_file))


def _tcp(name: str, env: str) -> dict:
    address = os.environ.get(env, "")
    if not address:
        return {"state": "unconfigured", "detail": f"{env} is not set"}
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return _state(True, address)
    except (OSError, ValueError) as exc:
        return _state(False, f"{address}: {exc}")


def _runc(runc: str) -> dict:
    try:
        result = subprocess.run([runc, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"state": "absent", "detail": str(exc)[:200]}
    return _state(result.returncode == 0, result.stdout.split("\n")[0].strip())


def check_services(root: str | os.PathLike, runc: str = "runc") -> dict[str, dict]:
    """Whether each service a node may run answers now: ``up``, ``down``, ``absent`` (not installed)
    or ``unconfigured`` (this node's environment does not name it). Where each one is looked for is
    the node's environment: the same variables agent.web, agent.dns and agent.mail read."""
    root = Path(root)
    return {
        "nginx": _nginx(root),
        "pdns": _pdns(),
        "postfix": _daemon("postfix", "postfix", "MPANEL_POSTFIX_PID_FILE", "/var/spool/postfix/pid/master.pid"),
        "dovecot": _daemon("dovecot", "dovecot", "MPANEL_DOVECOT_PID_FILE", "/run/dovecot/master.pid"),
        "runc": _runc(runc),
        "postgresql": _tcp("postgresql", "MPANEL_POSTGRES_ADDRESS"),
        "mariadb": _tcp("mariadb", "MPANEL_MARIADB_ADDRESS"),
    }
