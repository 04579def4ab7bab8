"""Node drivers: the panel's only way to act on a node (ARCHITECTURE §2 "Nodes and drivers").

Typed operations over two transports that share the node-side code in ``agent/``:
``LocalDriver`` calls ``agent.runtime`` in-process (rooted under ``MPANEL_NODE_ROOT``,
default ``$MPANEL_VAR_DIR/node``); ``AgentDriver`` sends the same operations to
``python -m agent serve`` as signed HTTP requests.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from agent import signing
from agent.runtime import AgentError, NodeRuntime, PodSpec
from agent.runtime import call as runtime_call
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

    def file_op(self, op: str, site_id: str, **args) -> dict:
        return self._call(f"file_{op}", {"site": site_id, **args})

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

    def db_security(self, server: dict) -> dict:
        """Guardian: where the server listens (``listen``) and whether it offers TLS (``ssl``)."""
        return self._call("db_security", {"server": server})


@lru_cache(maxsize=8)
def _local_runtime(root: str) -> NodeRuntime:
    return NodeRuntime(root)


def local_root() -> Path:
    return Path(getattr(settings, "MPANEL_NODE_ROOT", None) or settings.VAR_DIR / "node")


class LocalDriver(NodeDriver):
    """This machine. Every local node shares one root: there is only one machine."""

    def __init__(self, root: str | Path | None = None):
        self.runtime = _local_runtime(str(Path(root or local_root()).resolve()))

    def _call(self, op: str, args: dict):
        try:
            return runtime_call(self.runtime, op, args)
        except AgentError as exc:
            raise NodeError(exc.message, permanent=exc.permanent) from exc


class AgentDriver(NodeDriver):
    def __init__(self, address: str, secret: str, timeout: float | None = None):
        self.base = address.rstrip("/")
        self.secret = secret
        self.timeout = timeout or getattr(settings, "MPANEL_AGENT_TIMEOUT", 60)

    def _call(self, op: str, args: dict):
        path = "/v1/call"
        body = json.dumps({"op": op, "args": args}).encode()
        headers = {"Content-Type": "application/json", **signing.sign(self.secret, "POST", path, body)}
        request = urllib.request.Request(self.base + path, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read())["result"]
        except urllib.error.HTTPError as exc:
            try:
                data = json.loads(exc.read() or b"{}")
            except ValueError:
                data = {}
            message = data.get("error") or f"HTTP {exc.code}"
            raise NodeError(f"agent: {message}", permanent=bool(data.get("permanent"))) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise NodeError(f"agent unreachable at {self.base}: {exc}") from exc


def driver_for(node: Node, *, timeout: float | None = None) -> NodeDriver:
    """``timeout``: for reads made while someone waits (an API request, a heartbeat), shorter than a job's."""
    if node.transport == Transport.AGENT:
        if not node.address:
            raise NodeError(f"node {node} has no agent address", permanent=True)
        if not node.secret_salt:
            raise NodeError(f"node {node} has no agent secret yet: rotate its secret", permanent=True)
        address = node.address if "://" in node.address else f"http://{node.address}"
        return AgentDriver(address, agent_secret.derive(node), timeout=timeout)
    return LocalDriver()
