"""The node agent's HTTP service: ``python -m agent serve --port 8700 --secret-file /etc/mpanel/agent.secret``.

One endpoint, ``POST /v1/call`` with ``{"op": "...", "args": {...}}`` (the operations of
``agent.runtime``), and ``GET /v1/health`` (unauthenticated, says only "ok"). Every call must be
signed by the node's secret (``agent.signing``).
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .runtime import AgentError, NodeRuntime, call
from .signing import Verifier

log = logging.getLogger("mpanel.agent")
MAX_BODY = 1024 * 1024


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, runtime: NodeRuntime, verifier: Verifier):
        super().__init__(address, Handler)
        self.runtime = runtime
        self.verifier = verifier


class Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.info("%s %s", self.address_string(), fmt % args)

    def _answer(self, status: int, data) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/health":
            return self._answer(200, {"status": "ok"})
        return self._answer(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._answer(413, {"error": "body too large"})
        body = self.rfile.read(length)
        if self.path != "/v1/call":
            return self._answer(404, {"error": "not found"})
        refused = self.server.verifier.verify(self.headers, "POST", self.path, body)
        if refused:
            log.warning("refused a request from %s: %s", self.address_string(), refused)
            return self._answer(401, {"error": refused, "permanent": False})
        try:
            request = json.loads(body or b"{}")
            op, args = request["op"], request.get("args") or {}
            if not isinstance(op, str) or not isinstance(args, dict):
                raise ValueError("op must be a string and args an object")
        except (ValueError, KeyError, TypeError) as exc:
            return self._answer(400, {"error": f"bad request: {exc}", "permanent": True})
        try:
            result = call(self.server.runtime, op, args)
        except AgentError as exc:
            return self._answer(422 if exc.permanent else 503, {"error": exc.message, "permanent": exc.permanent})
        except Exception as exc:  # the agent must answer, not drop the connection
            log.exception("operation %s failed", op)
            return self._answer(500, {"error": f"{type(exc).__name__}: {exc}", "permanent": False})
        return self._answer(200, {"result": result})


def serve(host: str, port: int, secret: str, root: str, runc: str = "runc", report: dict | None = None) -> None:
    """``report``: ``{"panel_url", "node_id", "interval"}`` to post this node's metrics from this process."""
    runtime = NodeRuntime(root, runc=runc)
    server = AgentServer((host, port), runtime, Verifier(secret))
    if report:
        from .reporter import Reporter

        Reporter(secret=secret, runtime=runtime, **report).start()
        log.info("reporting metrics to %s every %ss", report["panel_url"], report["interval"])
    log.info("mPanel agent listening on %s:%s (root %s)", host, server.server_address[1], root)
    print(f"mpanel-agent ready on {host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
