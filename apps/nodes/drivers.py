"""Node drivers: the panel's only way to act on a node (docs/architecture.md, "A request, end to end").

Typed operations over two transports that share the node-side code in ``agent/``:
``LocalDriver`` calls ``agent.runtime`` in-process (rooted under ``MPANEL_NODE_ROOT``,
default ``$MPANEL_VAR_DIR/node``); ``AgentDriver`` sends the same operations to
``python -m agent serve`` as signed HTTPS requests, to the node's pinned certificate only.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from agent import signing, tls
from agent.dispatch import call as runtime_call
from agent.errors import AgentError
from agent.runtime import NodeRuntime, PodSpec
from apps.jobs.errors import register_safe_error

from . import agent_secret
from .models import Node, Transport

__all__ = ["AgentDriver", "LocalDriver", "NodeDriver", "NodeError", "PodRuntime", "PodSpec", "driver_for"]


@register_safe_error  # the node's messages are written for people; tenants read them redacted
class NodeError(Exception):
    """The node could not do it. ``permanent``: trying again will not help (bad spec, no runc)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class PodRuntime:
    state: str  # running | paused | stopped | created | absent | unknown
    memory_limit_bytes: int | None = None
    memory_usage_bytes: int | None = None
    cpu_seconds: float | None = None
    pids: int | None = None

    @classmethod
    def from_dict(cls, data: dict) -> PodRuntime:
        return cls(
            state=str(data.get("state") or "unknown"),
            memory_limit_bytes=data.get("memory_limit_bytes"),
            memory_usage_bytes=data.get("memory_usage_bytes"),
            cpu_seconds=data.get("cpu_seconds"),
            pids=data.get("pids"),
        )


class NodeDriver:
    """Typed operations; a transport implements only ``_call(op, args)``."""

    def _call(self, op: str, args: dict):
        raise NotImplementedError

    def pod_create(self, spec: PodSpec) -> dict:
        return self._call("pod_create", {"spec": spec.to_dict()})

    def pod_update(self, spec: PodSpec) -> dict:
        return self._call("pod_update", {"spec": spec.to_dict()})

    def pod_state(self, container_id: str) -> str:
        return self._call("pod_state", {"id": container_id})["state"]

    def pod_stats(self, container_id: str) -> PodRuntime:
        return PodRuntime.from_dict(self._call("pod_stats", {"id": container_id}))

    def pod_pause(self, container_id: str) -> dict:
        return self._call("pod_pause", {"id": container_id})

    def pod_resume(self, container_id: str) -> dict:
        return self._call("pod_resume", {"id": container_id})

    def pod_restart(self, spec: PodSpec) -> dict:
        return self._call("pod_restart", {"spec": spec.to_dict()})

    def pod_delete(self, container_id: str) -> dict:
        return self._call("pod_delete", {"id": container_id})

    def pod_list(self) -> list[dict]:
        return self._call("pod_list", {})

    def heartbeat(self) -> dict:
        return self._call("heartbeat", {})

    # --- websites (agent.web) and their files (agent.files) ------------------------------------
    def site_ensure(self, spec: dict) -> dict:
        return self._call("site_ensure", {"spec": spec})

    def site_remove(self, site_id: str) -> dict:
        return self._call("site_remove", {"id": site_id})

    def site_purge(self, site_id: str, system_user: str = "") -> dict:
        return self._call("site_purge", {"id": site_id, "system_user": system_user})

    def site_state(self, site_id: str) -> dict:
        return self._call("site_state", {"id": site_id})

    def site_disk_usage(self, site_id: str) -> dict:
        """``{"bytes": n}``: what the site's files take on the node (``du``)."""
        return self._call("site_disk_usage", {"id": site_id})

    def site_bandwidth(self, site_id: str) -> dict:
        """``{"bytes": n, "requests": k}``: what the site served since the last read (agent/bandwidth.py)."""
        return self._call("site_bandwidth", {"id": site_id})

    def file_op(self, op: str, site_id: str, **args) -> dict:
        return self._call(f"file_{op}", {"site": site_id, **args})

    def acme_challenge_put(self, site_id: str, token: str, answer: str) -> dict:
        """An HTTP-01 answer, served by the site's vhost (agent/certs.py)."""
        return self._call("acme_challenge_put", {"site": site_id, "token": token, "answer": answer})

    def acme_challenge_remove(self, site_id: str, token: str) -> dict:
        return self._call("acme_challenge_remove", {"site": site_id, "token": token})

    def site_world_writable(self, site_id: str, **limits) -> dict:
        """Guardian: the site's files and folders anyone may write (bounded walk; read-only)."""
        return self._call("site_world_writable", {"site": site_id, **limits})

    # --- DNS (agent/dns.py: the node's PowerDNS) ------------------------------------------------
    def dns_zone_ensure(self, zone: dict) -> dict:
        return self._call("dns_zone_ensure", {"zone": zone})

    def dns_zone_delete(self, name: str) -> dict:
        return self._call("dns_zone_delete", {"name": name})

    # --- mail (agent/mail.py: Postfix maps, Dovecot passwd-file) ---------------------------------
    def mail_sync(self, spec: dict) -> dict:
        return self._call("mail_sync", {"spec": spec})

    def mail_tls(self, spec: dict) -> dict:
        """The certificates of the node's mail hostnames (``spec["certificates"]``: PEM and key each)."""
        return self._call("mail_tls", {"spec": spec})

    # --- databases (agent/databases.py: the node's PostgreSQL or MariaDB server) -----------------
    # ``server``: engine, host, port, admin_user, admin_password (decrypted only for the call).
    def db_check(self, server: dict) -> dict:
        return self._call("db_check", {"server": server})

    def db_database_ensure(self, server: dict, name: str) -> dict:
        return self._call("db_database_ensure", {"server": server, "name": name})

    def db_database_drop(self, server: dict, name: str, users: list[str]) -> dict:
        return self._call("db_database_drop", {"server": server, "name": name, "users": users})

    def db_user_ensure(self, server: dict, name: str, verifier: str) -> dict:
        return self._call("db_user_ensure", {"server": server, "name": name, "verifier": verifier})

    def db_user_drop(self, server: dict, name: str, databases: list[str]) -> dict:
        return self._call("db_user_drop", {"server": server, "name": name, "databases": databases})

    def db_grant(self, server: dict, database: str, user: str) -> dict:
        return self._call("db_grant", {"server": server, "database": database, "user": user})

    def db_revoke(self, server: dict, database: str, user: str) -> dict:
        return self._call("db_revoke", {"server": server, "database": database, "user": user})

    def db_sizes(self, server: dict, names: list[str]) -> dict:
        return self._call("db_sizes", {"server": server, "names": names})

    # --- backups (agent/backups.py: restic) ---------------------------------------------------------
    # ``args["repository"]`` carries the repository's password, decrypted only for the call.
    def backup(self, op: str, args: dict):
        return self._call(f"backup_{op}", args)

    def db_security(self, server: dict) -> dict:
        """Guardian: where the server listens (``listen``) and whether it offers TLS (``ssl``)."""
        return self._call("db_security", {"server": server})


@lru_cache(maxsize=8)
def _local_runtime(root: str) -> NodeRuntime:
    return NodeRuntime(root)


@lru_cache(maxsize=32)
def _resolved(root: str) -> str:
    # A driver is made for every node operation (three per pod created); the root's real path, one
    # lstat per component, is worked out once per root named.
    return str(Path(root).resolve())


def local_root() -> Path:
    return Path(getattr(settings, "MPANEL_NODE_ROOT", None) or settings.VAR_DIR / "node")


class LocalDriver(NodeDriver):
    """This machine. Every local node shares one root: there is only one machine."""

    def __init__(self, root: str | Path | None = None):
        self.runtime = _local_runtime(_resolved(str(root or local_root())))

    def _call(self, op: str, args: dict):
        try:
            return runtime_call(self.runtime, op, args)
        except AgentError as exc:
            raise NodeError(exc.message, permanent=exc.permanent) from exc


class AgentDriver(NodeDriver):
    """``secrets``: every secret the node may hold (two during a rotation; each signs the request).
    ``pins``: the SPKI fingerprints accepted from the node (two during a certificate rotation). An
    ``https`` address without a pin, or an ``http`` one off loopback, is refused before connecting;
    a node that presents another key is refused after the handshake, before the request is sent."""

    path = "/v1/call"

    def __init__(self, address: str, secrets: str | Sequence[str], timeout: float | None = None, *,
                 pins: Sequence[str] = ()):  # fmt: skip
        try:
            self.address = tls.parse_address(address)
        except ValueError as exc:
            raise NodeError(f"agent address {address!r} refused: {exc}", permanent=True) from exc
        self.base = self.address.url
        self.secrets = [secrets] if isinstance(secrets, str) else list(secrets)
        self.pins = tuple(pins)
        if self.address.scheme == "https" and not self.pins:
            raise NodeError(f"the agent at {self.base} has no pinned certificate: give the node's tls_fingerprint "
                            "(`python -m agent fingerprint` on the node prints it)", permanent=True)  # fmt: skip
        self.timeout = timeout or getattr(settings, "MPANEL_AGENT_TIMEOUT", 60)
        self.presented: str | None = None  # the key the node presented at the last connection

    def _connection(self) -> http.client.HTTPConnection:
        host, port = self.address.host, self.address.port
        if self.address.scheme == "http":  # loopback only (parse_address)
            return http.client.HTTPConnection(host, port, timeout=self.timeout)
        return tls.PinnedHTTPSConnection(host, port, pins=self.pins, timeout=self.timeout)

    def _call(self, op: str, args: dict):
        body = json.dumps({"op": op, "args": args}).encode()
        headers = {"Content-Type": "application/json", **signing.sign(self.secrets, "POST", self.path, body)}
        connection = self._connection()
        try:
            connection.request("POST", self.path, body=body, headers=headers)
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except tls.PinMismatch as exc:
            message = (f"agent at {self.base} refused: {exc}; nothing was sent. If the node's key changed on "
                       "purpose, give the panel its new pin (rotate-certificate).")  # fmt: skip
            raise NodeError(message, permanent=True) from exc
        except ssl.SSLError as exc:
            raise NodeError(f"agent at {self.base}: TLS failed: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise NodeError(f"agent unreachable at {self.base}: {exc}") from exc
        finally:
            self.presented = getattr(connection, "presented", None) or self.presented
            connection.close()
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = {}
        if status != 200:
            message = (data.get("error") if isinstance(data, dict) else None) or f"HTTP {status}"
            raise NodeError(f"agent: {message}", permanent=bool(isinstance(data, dict) and data.get("permanent")))
        if not isinstance(data, dict) or "result" not in data:
            raise NodeError(f"agent at {self.base} answered something else than a result")
        return data["result"]


def driver_for(node: Node, *, timeout: float | None = None) -> NodeDriver:
    """``timeout``: for reads made while someone waits (an API request, a heartbeat), shorter than a job's."""
    if node.transport == Transport.AGENT:
        if not node.address:
            raise NodeError(f"node {node} has no agent address", permanent=True)
        if not node.secret_salt:
            raise NodeError(f"node {node} has no agent secret yet: rotate its secret", permanent=True)
        pins = tuple(pin for pin in (node.tls_fingerprint, node.tls_fingerprint_next) if pin)
        return AgentDriver(node.address, agent_secret.valid_secrets(node), timeout=timeout, pins=pins)
    return LocalDriver()
