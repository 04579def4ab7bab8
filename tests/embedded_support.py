"""The embedded default as `make run` serves it (scripts/run.sh): no DATABASE_URL, no REDIS_URL, so
SQLite and the database cache under a fresh MPANEL_VAR_DIR, seeded with the demo, served by gunicorn.

Two gunicorn servers of two workers each share that one var dir: four processes on one SQLite file
and one cache table, so a request answered by either server sees what the other counted or wrote.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
DEMO_PASSWORD = "mpanel-demo-2026"
DEMO_OWNER = "owner@demo.mpanel.local"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedPanel:
    def __init__(self, var_dir: Path, **env: str):
        self.var_dir = var_dir
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "MPANEL_JOBS_EAGER", "SECRET_KEY")
        }
        self.env.update(MPANEL_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1", **env)
        self.procs: list[subprocess.Popen] = []
        self.urls: list[str] = []

    def manage(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    def start(self, servers: int = 2, workers: int = 2) -> EmbeddedPanel:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput")
        self.manage("seed_demo", "--if-empty")
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        for n in range(servers):
            port = _free_port()
            log = open(self.var_dir / f"gunicorn-{n}.log", "ab")  # noqa: SIM115 - written until stopped
            self.procs.append(
                subprocess.Popen(
                    [gunicorn, "mpanel.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            self.urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        for proc, url in zip(self.procs, self.urls, strict=True):
            while True:
                assert proc.poll() is None, self.log_tail()
                try:
                    if requests.get(f"{url}/api/v1/__debug", timeout=30).status_code == 200:
                        break
                except requests.RequestException:  # not listening yet, or its workers still booting
                    pass
                assert time.monotonic() < deadline, "gunicorn did not start:\n" + self.log_tail()
                time.sleep(0.3)
        return self

    def url(self, n: int, path: str) -> str:
        """``path`` on server ``n`` (modulo the number of servers): callers alternate between them."""
        return self.urls[n % len(self.urls)] + path

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.var_dir.glob("gunicorn-*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
