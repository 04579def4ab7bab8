"""Node side of email: render the node's Postfix virtual maps and Dovecot passwd-file from the
panel's spec, check them with the daemons' own tools, and swap them in atomically.

Layout under ``<root>/mail/``:
    virtual_domains    Postfix ``virtual_mailbox_domains`` (hash map: ``domain OK``)
    virtual_mailboxes  ``virtual_mailbox_maps`` (``user@domain domain/user/``)
    virtual_aliases    ``virtual_alias_maps`` (``source dest,dest``; a catch-all is ``@domain dest``)
    passwd             Dovecot passwd-file (``user@domain:{ARGON2ID}…::::::userdb_quota_rule=*:storage=NM``)
    sieve/<domain>/<local>.sieve
                       a mailbox's autoresponder: a Sieve ``vacation`` script, compiled by ``sievec``
    dovecot.conf       the Dovecot part that reads all of this (passdb, Pigeonhole's sieve for LDA and
                       LMTP); the node's dovecot.conf ``!include``s it

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
from collections.abc import Iterable
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
    for m in mailboxes:
        if m.get("autoresponder"):
            _check_responder(m["address"], m["autoresponder"])
    return domains, mailboxes, aliases


DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Controls other than tab and newline have no business in a reply (and NUL would end the script).
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def sieve_quoted(value: str) -> str:
    """An RFC 5228 quoted string: only ``"`` and ``\\`` need (and get) a backslash."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sieve_multiline(value: str) -> str:
    """An RFC 5228 ``text:`` block: each line that starts with "." gets one more (dot-stuffing), so a
    line of only "." in the body cannot end the block; the block ends with a line of only "."."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # a final line break is the block's own
    return "text:\n" + "".join(("." + line if line.startswith(".") else line) + "\n" for line in lines) + ".\n"


def _check_responder(address: str, responder: dict) -> None:
    subject, body = responder.get("subject"), responder.get("body")
    if not isinstance(subject, str) or not subject or "\n" in subject or CONTROL_RE.search(subject):
        raise AgentError(f"bad autoresponder subject for {address!r}", permanent=True)
    if not isinstance(body, str) or not body or CONTROL_RE.search(body.replace("\r", "")):
        raise AgentError(f"bad autoresponder body for {address!r}", permanent=True)
    for key in ("start", "end"):
        if responder.get(key) is not None and not DATE_RE.match(str(responder[key])):
            raise AgentError(f"bad autoresponder {key} date for {address!r}", permanent=True)
    days = responder.get("days")
    if not isinstance(days, int) or not 1 <= days <= 60:
        raise AgentError(f"bad autoresponder interval for {address!r}", permanent=True)


def vacation_script(address: str, responder: dict, aliases: Iterable[str] = ()) -> str:
    """The Sieve script of one mailbox's autoresponder. Dates are the node's local dates, inclusive;
    ``:days`` is Pigeonhole's per-sender memory (no second reply to a sender within N days).
    ``aliases``: the addresses that deliver here, which Pigeonhole must count as the mailbox's own
    (it answers only mail whose To/Cc names one of them: mail to ``sales@`` forwarded here is)."""
    _check_responder(address, responder)
    own = ", ".join(sieve_quoted(a) for a in [address, *sorted(set(aliases) - {address})])
    tests = []
    if responder.get("start"):
        tests.append(f'currentdate :value "ge" "date" {sieve_quoted(responder["start"])}')
    if responder.get("end"):
        tests.append(f'currentdate :value "le" "date" {sieve_quoted(responder["end"])}')
    action = (
        f"vacation :days {int(responder['days'])} :subject {sieve_quoted(responder['subject'])}"
        f" :addresses [{own}] {sieve_multiline(responder['body'])};\n"
    )
    head = '# Rendered by mPanel: this mailbox\'s autoresponder.\nrequire ["vacation", "date", "relational"];\n'
    if not tests:
        return head + action
    return head + f"if allof ({', '.join(tests)}) {{\n{action}}}\n"


def _sievec(script: Path, binary: Path) -> None:
    try:
        result = subprocess.run(["sievec", str(script), str(binary)], capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL)  # fmt: skip
    except FileNotFoundError as exc:
        raise AgentError("sievec is not installed on this node (Debian: dovecot-sieve)", permanent=True) from exc
    if result.returncode != 0:
        raise AgentError(f"sievec rejected {script.name}: {(result.stderr or result.stdout).strip()[-500:]}",
                         permanent=True)  # fmt: skip


def _write_sieve(directory: Path, mailboxes: list[dict], aliases_of: dict[str, set[str]]) -> int:
    """One compiled script per mailbox with an active autoresponder; scripts of mailboxes without
    one any more are removed. Written and compiled under a temporary name, then renamed in."""
    base = directory / "sieve"
    base.mkdir(mode=0o755, exist_ok=True)
    os.chmod(base, 0o755)  # noqa: S103 - the mail user (LDA/LMTP run as it) reads the scripts
    wanted: set[Path] = set()
    for m in mailboxes:
        responder = m.get("autoresponder")
        if not responder or not m.get("enabled", True):
            continue
        local, _, domain = m["address"].partition("@")
        target = base / domain / f"{local}.sieve"
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        text = vacation_script(m["address"], responder, aliases_of.get(m["address"], ()))
        wanted.add(target)
        if target.exists() and target.read_text() == text and target.with_suffix(".svbin").exists():
            continue  # unchanged: keep its file dates, so Pigeonhole's duplicate memory is untouched
        tmp = target.with_name(f".{target.name}.new")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        tmp_bin = tmp.with_name(tmp.name + ".svbin")
        _sievec(tmp, tmp_bin)
        os.chmod(tmp_bin, 0o644)
        os.replace(tmp, target)
        os.replace(tmp_bin, target.with_suffix(".svbin"))
    for path in list(base.glob("*/*.sieve")):
        if path not in wanted:
            path.unlink(missing_ok=True)
            path.with_suffix(".svbin").unlink(missing_ok=True)
    return len(wanted)


def dovecot_conf(root: Path) -> str:
    """The Dovecot part mPanel owns: who may log in (the passwd-file) and Pigeonhole's Sieve for
    local delivery (LDA and LMTP), reading each mailbox's script under ``mail/sieve/%d/%n.sieve``."""
    directory = root / "mail"
    return f"""# Rendered by mPanel (agent/mail.py); !include it from the node's dovecot.conf.
passdb {{
  driver = passwd-file
  args = scheme=ARGON2ID {directory}/passwd
}}
protocol lda {{
  mail_plugins = $mail_plugins sieve
}}
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve = file:{directory}/sieve/%d/%n.sieve
  sieve_vacation_min_period = 1d
  sieve_vacation_max_period = 60d
}}
"""


def write_dovecot_conf(root: Path) -> Path:
    directory = root / "mail"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "dovecot.conf"
    text = dovecot_conf(root)
    if not target.exists() or target.read_text() != text:
        tmp = directory / ".dovecot.conf.new"
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return target


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
    aliases_of: dict[str, set[str]] = {}  # mailbox -> the aliases of its own node (tenant) delivering to it
    for path in sorted(fragments.glob("*.json")):
        part = json.loads(path.read_text())
        for key in merged:
            merged[key].extend(part.get(key) or [])
        boxes = {m["address"] for m in part.get("mailboxes") or []}
        for alias in part.get("aliases") or []:
            if alias["source"].startswith("@"):
                continue  # a catch-all is not an address anybody writes to
            for destination in alias["destinations"]:
                if destination in boxes:
                    aliases_of.setdefault(destination, set()).add(alias["source"])
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
    responders = _write_sieve(directory, enabled, aliases_of)
    write_dovecot_conf(root)
    return {"domains": len(domains), "mailboxes": len(enabled), "aliases": len(aliases), "autoresponders": responders,
            "dir": str(directory)}  # fmt: skip
