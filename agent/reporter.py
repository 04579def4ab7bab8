"""The node → panel direction: every interval the agent collects its samples (agent.metrics) and
posts them, signed with the node's secret, to the panel's batch ingest endpoint.

``POST <panel>/api/v1/hosting/server-metrics/ingest`` with ``X-Mpanel-Node: <node id>`` and the
headers of ``agent.signing`` (HMAC of timestamp, nonce, method, path and the body's hash; the panel
refuses a stale timestamp and a nonce it has seen). A batch the panel did not take (down,
unreachable) is kept and sent again with the next one, up to ``MAX_PENDING`` samples of the last
``MAX_AGE`` seconds (the oldest are dropped first); sending the same samples twice stores them
once (unique node+metric+ts).

The batch also carries the requests Shield denied since the last batch the panel took (``shield``,
read from ``<root>/web/logs/shield.log`` by ``agent.shield.ShieldLog``): the log itself is the
backlog, so a batch the panel did not take is read again next time, and the panel stores each
request once (nginx's request id).

Started by ``python -m agent serve --panel-url URL --node-id ID`` (a thread of the agent's process)
or alone by ``python -m agent report`` (``--once`` for one batch).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from . import signing
from .errors import AgentError
from .metrics import Collector, check_services
from .runtime import NodeRuntime
from .shield import ShieldLog, log_path

log = logging.getLogger("mpanel.agent.reporter")
INGEST_PATH = "/api/v1/hosting/server-metrics/ingest"
MAX_PENDING = 10_000  # the panel's default MPANEL_METRICS_MAX_BATCH: a backlog still fits one request
MAX_AGE = 5 * 3600  # the panel refuses samples older than MPANEL_METRICS_MAX_AGE (6 h by default)
MAX_SHIELD_EVENTS = 5000  # the panel's default MPANEL_SHIELD_MAX_EVENTS


class Reporter:
    def __init__(self, *, panel_url: str, node_id: str, secret: str | Callable[[], str], runtime: NodeRuntime,
                 interval: float = 60.0, timeout: float = 15.0):  # fmt: skip
        self.url = panel_url.rstrip("/") + INGEST_PATH
        self.path = urllib.parse.urlsplit(self.url).path
        self.node_id = node_id
        self.secret = secret if callable(secret) else (lambda: secret)  # a rotated secret file is picked up
        self.runtime = runtime
        self.interval = interval
        self.timeout = timeout
        self.collector = Collector(disk_path=runtime.root, state_file=Path(runtime.root) / "metrics-state.json")
        self.pending: list[list] = []
        root = Path(runtime.root)
        self.shield_log = ShieldLog(log_path(root / "web"), root / "shield-log-state.json",
                                    limit=MAX_SHIELD_EVENTS, max_age=MAX_AGE)  # fmt: skip
        self._shield_position: dict | None = None
        self.stop = threading.Event()

    def pod_stats(self) -> dict[str, dict]:
        stats = {}
        try:
            for pod in self.runtime.pod_list():
                if pod["state"] in ("running", "paused"):
                    stats[pod["id"]] = self.runtime.pod_stats(pod["id"])
        except (AgentError, OSError, ValueError) as exc:  # no runc here: the node's own figures still go
            log.warning("pod usage not read: %s", exc)
        return stats

    def batch(self) -> dict:
        samples = self.collector.collect(self.pod_stats())
        oldest = time.time() - MAX_AGE
        self.pending = [s for s in self.pending if s[1] >= oldest] + samples
        self.pending = self.pending[-MAX_PENDING:]
        shield_events, self._shield_position = self.shield_log.read()
        return {"samples": self.pending, "services": check_services(self.runtime.root, self.runtime.runc_bin),
                "shield": shield_events}  # fmt: skip

    def send(self, payload: dict) -> dict:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "X-Mpanel-Node": self.node_id,
                   **signing.sign(self.secret(), "POST", self.path, body)}  # fmt: skip
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            return json.loads(response.read())

    def report_once(self) -> dict:
        """One batch; raises when the panel did not take it (the samples stay pending)."""
        payload = self.batch()
        try:
            answer = self.send(payload)
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            if 400 <= exc.code < 500 and exc.code not in (401, 408, 429):
                self.pending = []  # the panel refuses these samples: sending them again will not help
                self.shield_log.commit(self._shield_position)
            raise RuntimeError(f"panel answered {exc.code}: {detail}") from exc
        self.pending = []
        self.shield_log.commit(self._shield_position)
        return answer

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                answer = self.report_once()
                log.info("reported %s samples (%s new)", answer.get("received"), answer.get("stored"))
            except (RuntimeError, urllib.error.URLError, OSError, ValueError) as exc:
                log.warning("metrics report failed (%s samples pending): %s", len(self.pending), exc)
            self.stop.wait(self.interval)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="mpanel-reporter", daemon=True)
        thread.start()
        return thread
