"""Node side of DNS: converge a PowerDNS authoritative server to the panel's zones over its HTTP API
(the default), or write BIND zone files (``MPANEL_DNS_BACKEND=bind``, see ``Bind``).

The node's PowerDNS is named by the node's environment (never by the panel):
``MPANEL_PDNS_API_URL`` (e.g. ``http://127.0.0.1:8081``), ``MPANEL_PDNS_API_KEY`` and
``MPANEL_PDNS_SERVER_ID`` (default ``localhost``). Standard library only, like the rest of the agent.

A zone spec is plain data: ``{"name": "example.com.", "rrsets": [{"name", "type", "ttl",
"records": ["<rdata in presentation format, absolute names>"]}]}`` with the SOA among the rrsets.
``zone_ensure`` is idempotent: it creates the zone when absent and otherwise replaces every rrset
that differs and deletes the ones the spec does not hold, so a second run changes nothing.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import AgentError
from .registry import OPERATIONS, Node
from .validate import Invalid
from .validate import dns as rules


class PowerDNS:
    def __init__(self, api_url: str | None = None, api_key: str | None = None, server_id: str | None = None):
        self.api_url = (api_url or os.environ.get("MPANEL_PDNS_API_URL") or "").rstrip("/")
        self.api_key = api_key or os.environ.get("MPANEL_PDNS_API_KEY") or ""
        self.server_id = server_id or os.environ.get("MPANEL_PDNS_SERVER_ID") or "localhost"
        if not self.api_url or not self.api_key:
            raise AgentError("this node has no PowerDNS API configured (MPANEL_PDNS_API_URL, MPANEL_PDNS_API_KEY)")

    def _request(self, method: str, path: str, body=None, timeout: float = 20):
        url = f"{self.api_url}/api/v1/servers/{urllib.parse.quote(self.server_id)}{path}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"X-API-Key": self.api_key, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                raw = response.read()
                return response.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as exc:
            raw = exc.read() or b""
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"error": raw.decode(errors="replace")[:500]}
            return exc.code, payload
        except (urllib.error.URLError, OSError) as exc:
            raise AgentError(f"PowerDNS API unreachable at {self.api_url}: {exc}") from exc

    @staticmethod
    def _zone_id(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    def zone_read(self, name: str) -> dict | None:
        status, data = self._request("GET", f"/zones/{self._zone_id(name)}")
        if status in (404, 422):
            return None
        if status != 200:
            raise AgentError(f"PowerDNS: reading {name} failed ({status}): {data}")
        return data

    def zone_ensure(self, spec: dict) -> dict:
        name, rrsets = _checked(spec)
        wanted = {(r["name"], r["type"]): r for r in rrsets}
        current = self.zone_read(name)
        if current is None:
            body = {
                "name": name,
                "kind": "Native",
                "nameservers": [],
                "soa_edit": "",
                "soa_edit_api": "",
                "rrsets": [_api_rrset(r) for r in wanted.values()],
            }
            status, data = self._request("POST", "/zones", body)
            if status != 201:
                raise AgentError(f"PowerDNS: creating {name} failed ({status}): {data}", permanent=status == 422)
            return {"zone": name, "created": True, "changed": len(wanted)}
        if current.get("soa_edit_api") or current.get("soa_edit"):
            self._request("PUT", f"/zones/{self._zone_id(name)}", {"soa_edit_api": "", "soa_edit": ""})
        present = {
            (r["name"], r["type"]): {
                "name": r["name"],
                "type": r["type"],
                "ttl": r["ttl"],
                "records": sorted(x["content"] for x in r.get("records", []) if not x.get("disabled")),
            }
            for r in current.get("rrsets", [])
        }
        changes = []
        for key, rrset in wanted.items():
            have = present.get(key)
            if have is None or have["ttl"] != rrset["ttl"] or have["records"] != sorted(rrset["records"]):
                changes.append({**_api_rrset(rrset), "changetype": "REPLACE"})
        for key in present.keys() - wanted.keys():
            changes.append({"name": key[0], "type": key[1], "changetype": "DELETE"})
        if changes:
            status, data = self._request("PATCH", f"/zones/{self._zone_id(name)}", {"rrsets": changes})
            if status != 204:
                raise AgentError(f"PowerDNS: updating {name} failed ({status}): {data}", permanent=status == 422)
        return {"zone": name, "created": False, "changed": len(changes)}

    def zone_delete(self, name: str) -> dict:
        name = _zone_name({"name": name})
        status, data = self._request("DELETE", f"/zones/{self._zone_id(name)}")
        if status in (204, 404, 422):
            return {"zone": name, "deleted": status == 204}
        raise AgentError(f"PowerDNS: deleting {name} failed ({status}): {data}")


def _zone_name(spec: dict) -> str:
    try:
        return rules.zone_name(spec.get("name")) + "."
    except Invalid as exc:
        raise AgentError(f"bad zone name {spec.get('name')!r}: {exc.message}", permanent=True) from None


def _checked(spec: dict) -> tuple[str, list[dict]]:
    """The zone by the rules the panel applied (agent/validate/dns.py); a fault fails this zone only."""
    try:
        return rules.zone_spec(spec)
    except Invalid as exc:
        raise AgentError(f"bad zone {spec.get('name')!r}: {exc.message}", permanent=True) from None


def _api_rrset(rrset: dict) -> dict:
    return {
        "name": rrset["name"],
        "type": rrset["type"],
        "ttl": rrset["ttl"],
        "records": [{"content": c, "disabled": False} for c in rrset["records"]],
    }


class Bind:
    """BIND zone files under ``<root>/dns/bind/``: ``<zone>.zone`` in RFC 1035 master format (the SOA
    first, then every rrset) and ``zones.conf`` with one ``zone "<name>" { type primary; file …; };``
    per file, for the node's named.conf to ``include``. A zone file is written under a temporary
    name and checked by ``named-checkzone`` (bind9-utils), and ``zones.conf`` by ``named-checkconf``,
    before either is renamed into place, so named never reads what BIND itself would refuse. An
    unchanged zone is not rewritten.

    With ``MPANEL_BIND_RNDC`` set (the node's rndc command, e.g. ``rndc -c /etc/bind/rndc.conf``),
    named is told: ``rndc reconfig`` when a zone is added or removed (it re-reads zones.conf) and
    ``rndc reload <zone>`` when one changes. That runs even for an unchanged file, so a job retried
    after a failed reload still reaches named; a failed rndc call fails the job for a retry (the
    files are already right). Unset, reloading is left to the node's own setup."""

    def __init__(self, root) -> None:
        self.dir = Path(root) / "dns" / "bind"

    @staticmethod
    def _run(*args: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(list(args), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise AgentError(f"{args[0]} is not installed on this node (Debian: bind9-utils)", permanent=True) from exc

    @staticmethod
    def zone_text(name: str, rrsets: list[dict]) -> str:
        soa = [r for r in rrsets if r["type"] == "SOA"]
        if len(soa) != 1 or len(soa[0]["records"]) != 1:
            raise AgentError(f"the zone {name} needs exactly one SOA", permanent=True)
        rest = sorted((r for r in rrsets if r["type"] != "SOA"), key=lambda r: (r["name"], r["type"]))
        lines = [f"; {name} written by mPanel (agent/dns.py); changes here are overwritten", f"$ORIGIN {name}"]
        for rrset in [soa[0], *rest]:
            for content in sorted(rrset["records"]):
                if "\n" in content or "\r" in content:
                    raise AgentError(f"bad record content in {name}", permanent=True)
                lines.append(f"{rrset['name']}\t{rrset['ttl']}\tIN\t{rrset['type']}\t{content}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _rndc(*args: str) -> subprocess.CompletedProcess | None:
        command = (os.environ.get("MPANEL_BIND_RNDC") or "").strip()
        if not command:
            return None
        result = Bind._run(*shlex.split(command), *args)  # rndc is in bind9-utils too
        if result.returncode != 0:
            # Transient: named may be restarting; the job is retried and the files are already right.
            raise AgentError(f"rndc {' '.join(args)} failed: {(result.stdout + result.stderr).strip()[-500:]}")
        return result

    def _tell_named(self, name: str, *, created: bool) -> None:
        if created:
            self._rndc("reconfig")  # a new zone: named learns it from zones.conf
            return
        try:
            self._rndc("reload", name[:-1])
        except AgentError as exc:
            if "not found" not in str(exc):
                raise
            self._rndc("reconfig")  # a retry after named missed the reconfig that would have added it
            self._rndc("reload", name[:-1])

    def _check_zone(self, name: str, path) -> None:
        result = self._run("named-checkzone", "-q", name, str(path))
        if result.returncode != 0:
            detail = self._run("named-checkzone", name, str(path))
            raise AgentError(f"named-checkzone refused {name}: {(detail.stdout + detail.stderr).strip()[-800:]}",
                             permanent=True)  # fmt: skip

    def _write_conf(self) -> None:
        stanzas = []
        for path in sorted(self.dir.glob("*.zone")):
            zone = path.name[: -len(".zone")] + "."
            stanzas.append(f'zone "{zone}" {{ type primary; file "{path}"; }};\n')
        tmp = self.dir / ".zones.conf.new"
        tmp.write_text("// written by mPanel (agent/dns.py): include it from named.conf\n" + "".join(stanzas))
        result = self._run("named-checkconf", str(tmp))
        if result.returncode != 0:
            raise AgentError(f"named-checkconf refused zones.conf: {(result.stdout + result.stderr).strip()[-800:]}",
                             permanent=True)  # fmt: skip
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.dir / "zones.conf")

    def zone_ensure(self, spec: dict) -> dict:
        name, rrsets = _checked(spec)
        text = self.zone_text(name, rrsets)
        self.dir.mkdir(parents=True, exist_ok=True)
        target = self.dir / f"{name[:-1]}.zone"
        created = not target.exists()
        if not created and target.read_text() == text:
            self._tell_named(name, created=False)
            return {"zone": name, "created": False, "changed": 0, "file": str(target)}
        tmp = self.dir / f".{name[:-1]}.zone.new"
        tmp.write_text(text)
        try:
            self._check_zone(name, tmp)
        except AgentError:
            tmp.unlink(missing_ok=True)
            raise
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        self._write_conf()
        self._tell_named(name, created=created)
        return {"zone": name, "created": created, "changed": 1, "file": str(target)}

    def zone_delete(self, name: str) -> dict:
        name = _zone_name({"name": name})
        target = self.dir / f"{name[:-1]}.zone"
        existed = target.exists()
        target.unlink(missing_ok=True)
        if self.dir.exists():
            self._write_conf()
            self._rndc("reconfig")  # named drops a zone no longer in zones.conf
        return {"zone": name, "deleted": existed}


def backend(root=None):
    """The node's DNS server, named by its environment: ``MPANEL_DNS_BACKEND`` = ``powerdns`` (default)
    or ``bind`` (zone files under the node root)."""
    kind = (os.environ.get("MPANEL_DNS_BACKEND") or "powerdns").strip().lower()
    if kind == "powerdns":
        return PowerDNS()
    if kind == "bind":
        if root is None:
            raise AgentError("the bind DNS backend needs the node root", permanent=True)
        return Bind(root)
    raise AgentError(f"unknown MPANEL_DNS_BACKEND {kind!r} (powerdns or bind)", permanent=True)


# --- the zone operations (agent.dispatch calls them by name) --------------------------------------


@OPERATIONS.register("dns_zone_ensure")
def dns_zone_ensure(node: Node, args: dict) -> dict:
    return backend(node.root).zone_ensure(args.get("zone") or {})


@OPERATIONS.register("dns_zone_delete")
def dns_zone_delete(node: Node, args: dict) -> dict:
    return backend(node.root).zone_delete(str(args.get("name") or ""))
