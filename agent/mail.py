"""Node side of email: render the node's Postfix virtual maps and Dovecot passwd-file from the
panel's spec, check them with the daemons' own tools, and swap them in atomically.

Layout under ``<root>/mail/``:
    virtual_domains    Postfix ``virtual_mailbox_domains`` (hash map: ``domain OK``)
    virtual_mailboxes  ``virtual_mailbox_maps`` (``user@domain domain/user/``)
    virtual_aliases    ``virtual_alias_maps`` (``source dest,dest``; a catch-all is ``@domain dest``)
    passwd             Dovecot passwd-file (``user@domain:{ARGON2ID}…::::::userdb_quota_rule=*:storage=NM``)

Each map is written to a temporary name, compiled with ``postmap`` and read back with
``postmap -q`` for every key; only then are the map and its ``.db`` renamed over the old ones.
Rendering is a pure function of the spec, so running it twice changes nothing.
Standard library only, like the rest of the agent.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import re
import subprocess
from pathlib import Path

from .runtime import AgentError

ADDRESS_RE = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@([a-z0-9_-]+\.)+[a-z0-9_-]+$")
DOMAIN_RE = re.compile(r"^([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)+[a-z0-9-]{2,63}$")
HASH_RE = re.compile(r"^\{[A-Z0-9-]+\}[^\s:]+$")
DOVECOT_GROUP = os.environ.get("MPANEL_DOVECOT_GROUP", "dovecot")


def _postmap(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["postmap", *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise AgentError("postmap is not installed on this node (Debian: postfix)", permanent=True) from exc


def _check(spec: dict) -> tuple[list[str], list[dict], list[dict]]:
    domains = [str(d).lower() for d in spec.get("domains") or []]
    for d in domains:
        if not DOMAIN_RE.match(d):
            raise AgentError(f"bad mail domain {d!r}", permanent=True)
    mailboxes = list(spec.get("mailboxes") or [])
    for m in mailboxes:
        if not ADDRESS_RE.match(str(m.get("address", ""))) or not HASH_RE.match(str(m.get("password_hash", ""))):
            raise AgentError(f"bad mailbox {m.get('address')!r}", permanent=True)
    aliases = list(spec.get("aliases") or [])
    for a in aliases:
        source = str(a.get("source", ""))
        if not (ADDRESS_RE.match(source) or (source.startswith("@") and DOMAIN_RE.match(source[1:]))):
            raise AgentError(f"bad alias source {source!r}", permanent=True)
        if not a.get("destinations") or not all(ADDRESS_RE.match(str(d)) for d in a["destinations"]):
            raise AgentError(f"bad alias destinations for {source!r}", permanent=True)
    return domains, mailboxes, aliases


def _write_map(directory: Path, name: str, entries: list[tuple[str, str]]) -> None:
    tmp = directory / f".{name}.new"
    tmp.write_text("".join(f"{k} {v}\n" for k, v in entries))
    result = _postmap(f"hash:{tmp}")
    if result.returncode != 0:
        raise AgentError(f"postmap rejected {name}: {(result.stderr or result.stdout).strip()[-500:]}", permanent=True)
    for key, value in entries:
        got = _postmap("-q", key, f"hash:{tmp}")
        if got.returncode != 0 or got.stdout.strip() != value:
            raise AgentError(f"postmap -q {key} in {name} answered {got.stdout.strip()!r}, not {value!r}")
    os.replace(f"{tmp}.db", directory / f"{name}.db")
    os.replace(tmp, directory / name)


NODE_ID_RE = re.compile(r"^[0-9a-fA-F-]{36}$")


def mail_sync(root: Path, spec: dict) -> dict:
    """One panel node's mail, kept as ``mail/nodes/<node id>.json``; the maps are rendered from every
    such file, since several local nodes (of different tenants) share this machine and its daemons."""
    _check(spec)
    node_id = str(spec.get("node") or "")
    if not NODE_ID_RE.match(node_id):
        raise AgentError("the mail spec needs its node id", permanent=True)
    directory = root / "mail"
    fragments = directory / "nodes"
    fragments.mkdir(parents=True, exist_ok=True)
    tmp = fragments / f".{node_id}.json.new"
    tmp.write_text(json.dumps(spec, sort_keys=True))
    os.chmod(tmp, 0o600)
    os.replace(tmp, fragments / f"{node_id}.json")
    merged: dict = {"domains": [], "mailboxes": [], "aliases": []}
    for path in sorted(fragments.glob("*.json")):
        part = json.loads(path.read_text())
        for key in merged:
            merged[key].extend(part.get(key) or [])
    domains, mailboxes, aliases = _check(merged)
    _write_map(directory, "virtual_domains", [(d, "OK") for d in sorted(domains)])
    enabled = sorted((m for m in mailboxes if m.get("enabled", True)), key=lambda m: m["address"])
    boxes = []
    for m in enabled:
        local, _, domain = m["address"].partition("@")
        boxes.append((m["address"], f"{domain}/{local}/"))
    _write_map(directory, "virtual_mailboxes", boxes)
    _write_map(directory, "virtual_aliases", sorted((a["source"], ",".join(a["destinations"])) for a in aliases))
    lines = []
    for m in enabled:
        quota = int(m.get("quota_mb") or 0)
        extra = f"userdb_quota_rule=*:storage={quota}M" if quota else ""
        lines.append(f"{m['address']}:{m['password_hash']}::::::{extra}\n")
    tmp = directory / ".passwd.new"
    tmp.write_text("".join(lines))
    os.chmod(tmp, 0o640)
    with contextlib.suppress(KeyError, PermissionError):  # Dovecot's auth reads it as its group
        os.chown(tmp, -1, grp.getgrnam(DOVECOT_GROUP).gr_gid)
    os.replace(tmp, directory / "passwd")
    return {"domains": len(domains), "mailboxes": len(enabled), "aliases": len(aliases), "dir": str(directory)}
