"""The node agent's HTTPS service: ``python -m agent serve --port 8700 --secret-file /etc/mpanel/agent.secret``.

One endpoint, ``POST /v1/call`` with ``{"op": "...", "args": {...}}`` (the operations that
``agent.dispatch`` calls by name), and ``GET /v1/health`` (unauthenticated, says only "ok"). Every
call must be signed by the node's secret (``agent.signing``). The service speaks TLS with the node's
own self-signed certificate, which the panel pins (``agent.tls``); plain HTTP only on loopback.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import tls
from .dispatch import call
from .errors import AgentError
from .reporter import Reporter
from .runtime import NodeRuntime
from .signing import Verifier

log = logging.getLogger("mpanel.agent")
MAX_BODY = 1024 * 1024


class PlainHttpRefused(ValueError):
    pass


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, runtime: NodeRuntime, verifier: Verifier, identity: tls.ServerIdentity | None):
        if identity is None and not tls.is_loopback(address[0]):
            raise PlainHttpRefused(f"plain HTTP on {address[0]} refused: only a loopback address may go without TLS")
        super().__init__(address, Handler)
        self.runtime = runtime
        self.verifier = verifier
        self.identity = identity

    def finish_request(self, request, client_address):
        """The TLS handshake runs here, in the connection's own thread: a slow or silent client
        holds up only itself, never the accept loop."""
        if self.identity is None:
            return super().finish_request(request, client_address)
        request.settimeout(tls.HANDSHAKE_TIMEOUT)
        try:
            wrapped = self.identity.context().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            wrapped.settimeout(Handler.timeout)
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


class Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"
    timeout = 300  # an idle keep-alive connection is closed after this (reads and writes only)

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


def serve(host: str, port: int, secret: str | Callable[[], str], root: str, runc: str = "runc",
          report: dict | None = None, tls_dir: str | None = None, plain_http: bool = False) -> None:  # fmt: skip
    """``secret``: the secret, or a callable answering the current one (``signing.SecretFile``).
    ``tls_dir``: the node's key and certificate (default ``<root>/tls``, made on first start).
    ``plain_http``: no TLS, refused unless ``host`` is a loopback address.
    ``report``: ``{"panel_url", "node_id", "interval"}`` to post this node's metrics from this process."""
    if plain_http and not tls.is_loopback(host):
        raise PlainHttpRefused(f"plain HTTP on {host} refused: only a loopback address may go without TLS")
    runtime = NodeRuntime(root, runc=runc)
    identity = None if plain_http else tls.ServerIdentity(tls_dir or f"{root}/tls")
    server = AgentServer((host, port), runtime, Verifier(secret), identity)
    if report:
        Reporter(secret=secret, runtime=runtime, **report).start()
        log.info("reporting metrics to %s every %ss", report["panel_url"], report["interval"])
    scheme = "http" if identity is None else "https"
    address = tls.AgentAddress(scheme, host, server.server_address[1]).url
    pin = f" certificate {tls.shown(identity.fingerprint)}" if identity else ""
    log.info("mPanel agent listening on %s (root %s)%s", address, root, pin)
    print(f"mpanel-agent ready on {address}{pin}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
