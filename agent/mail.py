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

from . import pem
from .errors import AgentError
from .registry import OPERATIONS, Node
from .validate import Invalid
from .validate import mail as rules
from .validate import sieve as sieve_rules

DOVECOT_GROUP = os.environ.get("MPANEL_DOVECOT_GROUP", "dovecot")


def _postmap(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["postmap", *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise AgentError("postmap is not installed on this node (Debian: postfix)", permanent=True) from exc


def _entries(part: dict) -> tuple[dict, list[dict]]:
    """One node's part of the mail, split into what may be served and what is refused.

    Every value is checked by the rules the panel applied (agent/validate/mail.py); a mailbox or an
    alias must be in one of the part's own domains. A refused entry is left out, with its reason,
    so that it can fail only its own mail domain, never the maps the other nodes (tenants) share."""
    rejected: list[dict] = []

    def refuse(kind: str, key, exc: Invalid | AgentError) -> None:
        key = str(key)[:300]
        domain = key.rpartition("@")[2] if "@" in key else key
        rejected.append({"kind": kind, "key": key, "domain": domain, "error": exc.message})

    domains: list[str] = []
    for value in part.get("domains") or []:
        try:
            domains.append(rules.mail_domain(value))
        except Invalid as exc:
            refuse("domain", value, exc)
    own = set(domains)

    def in_own(address: str) -> str:
        if address.rpartition("@")[2] not in own:
            raise Invalid(f"{address} is not in a mail domain of this node.")
        return address

    mailboxes: list[dict] = []
    for m in part.get("mailboxes") or []:
        m = m if isinstance(m, dict) else {}
        try:
            box = {
                "address": in_own(rules.address(m.get("address"))),
                "password_hash": rules.password_hash(m.get("password_hash")),
                "quota_mb": rules.quota_mb(m.get("quota_mb") or 0),
                "enabled": bool(m.get("enabled", True)),
                "autoresponder": None,
            }
        except Invalid as exc:
            refuse("mailbox", m.get("address"), exc)
            continue
        if m.get("autoresponder"):
            try:
                box["autoresponder"] = responder_spec(box["address"], m["autoresponder"])
            except AgentError as exc:  # the mailbox is still served, without the reply
                refuse("autoresponder", box["address"], exc)
        mailboxes.append(box)
    aliases: list[dict] = []
    for a in part.get("aliases") or []:
        a = a if isinstance(a, dict) else {}
        try:
            source = rules.alias_source(a.get("source"))
            in_own(source)
            destinations = a.get("destinations")
            if not isinstance(destinations, list) or not 0 < len(destinations) <= 50:
                raise Invalid(f"{source} needs 1 to 50 destinations.")
            aliases.append({"source": source, "destinations": [rules.destination(d) for d in destinations]})
        except Invalid as exc:
            refuse("alias", a.get("source"), exc)
    return {"domains": domains, "mailboxes": mailboxes, "aliases": aliases}, rejected


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


# What the refusal of each part of an autoresponder says (the spec's keys, as ``sieve.vacation`` names them).
RESPONDER_PARTS = {"subject": "subject", "body": "body", "start": "start date", "end": "end date", "days": "interval"}


def responder_spec(address: str, responder) -> dict:
    """The autoresponder as its script gets it, by the rule the panel applied before it stored it
    (agent/validate/sieve.py); a refusal fails this mailbox's reply only, for good."""
    try:
        return sieve_rules.vacation(responder if isinstance(responder, dict) else {})
    except Invalid as exc:
        part = RESPONDER_PARTS.get(exc.field or "", "spec")
        raise AgentError(f"bad autoresponder {part} for {address!r}", permanent=True) from exc


def vacation_script(address: str, responder: dict, aliases: Iterable[str] = ()) -> str:
    """The Sieve script of one mailbox's autoresponder. Dates are the node's local dates, inclusive;
    ``:days`` is Pigeonhole's per-sender memory (no second reply to a sender within N days).
    ``aliases``: the addresses that deliver here, which Pigeonhole must count as the mailbox's own
    (it answers only mail whose To/Cc names one of them: mail to ``sales@`` forwarded here is)."""
    responder = responder_spec(address, responder)
    own = ", ".join(sieve_quoted(a) for a in [address, *sorted(set(aliases) - {address})])
    tests = []
    if responder.get("start"):
        tests.append(f'currentdate :value "ge" "date" {sieve_quoted(str(responder["start"]))}')
    if responder.get("end"):
        tests.append(f'currentdate :value "le" "date" {sieve_quoted(str(responder["end"]))}')
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


def _write_sieve(directory: Path, mailboxes: list[dict], aliases_of: dict[str, set[str]]) -> tuple[int, list]:
    """One compiled script per mailbox with an active autoresponder; scripts of mailboxes without
    one any more are removed. Written and compiled under a temporary name, then renamed in. A
    script ``sievec`` refuses is left out (and returned with the reason); the others are written."""
    base = directory / "sieve"
    base.mkdir(mode=0o755, exist_ok=True)
    os.chmod(base, 0o755)  # noqa: S103 - the mail user (LDA/LMTP run as it) reads the scripts
    wanted: set[Path] = set()
    failed: list[tuple[str, str]] = []
    for m in mailboxes:
        responder = m.get("autoresponder")
        if not responder or not m.get("enabled", True):
            continue
        local, _, domain = m["address"].partition("@")
        target = base / domain / f"{local}.sieve"
        try:
            text = vacation_script(m["address"], responder, aliases_of.get(m["address"], ()))
        except AgentError as exc:
            failed.append((m["address"], exc.message))
            continue
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        wanted.add(target)
        if target.exists() and target.read_text() == text and target.with_suffix(".svbin").exists():
            continue  # unchanged: keep its file dates, so Pigeonhole's duplicate memory is untouched
        tmp = target.with_name(f".{target.name}.new")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        tmp_bin = tmp.with_name(tmp.name + ".svbin")
        try:
            _sievec(tmp, tmp_bin)
        except AgentError as exc:
            if not exc.permanent:
                raise
            tmp.unlink(missing_ok=True)
            wanted.discard(target)
            failed.append((m["address"], exc.message))
            continue
        os.chmod(tmp_bin, 0o644)
        os.replace(tmp, target)
        os.replace(tmp_bin, target.with_suffix(".svbin"))
    for path in list(base.glob("*/*.sieve")):
        if path not in wanted:
            path.unlink(missing_ok=True)
            path.with_suffix(".svbin").unlink(missing_ok=True)
    return len(wanted), failed


def dovecot_conf(root: Path) -> str:
    """The Dovecot part mPanel owns: who may log in (the passwd-file) and Pigeonhole's Sieve for
    local delivery (LDA and LMTP), reading each mailbox's script under ``mail/sieve/%d/%n.sieve``."""
    directory = root / "mail"
    return f"""# Rendered by mPanel (agent/mail.py); !include it from the node's dovecot.conf.
{suspension_passdb(directory)}passdb {{
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
    ensure_suspended_users(directory)
    text = dovecot_conf(root)
    if not target.exists() or target.read_text() != text:
        tmp = directory / ".dovecot.conf.new"
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return target


def _lookup(path: Path, keys: list[str]) -> dict[str, str]:
    """What Postfix answers for each key (one ``postmap -q -`` reading the keys from stdin)."""
    try:
        result = subprocess.run(["postmap", "-q", "-", f"hash:{path}"], input="".join(f"{k}\n" for k in keys),
                                capture_output=True, text=True, timeout=60)  # fmt: skip
    except FileNotFoundError as exc:
        raise AgentError("postmap is not installed on this node (Debian: postfix)", permanent=True) from exc
    if result.returncode not in (0, 1):  # 1: some key was not found
        raise AgentError(f"postmap -q refused {path.name}: {(result.stderr or result.stdout).strip()[-500:]}")
    found = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("\t")
        found[key] = value.strip()
    return found


def _write_map(directory: Path, name: str, entries: list[tuple[str, str]]) -> list[str]:
    """Compile the map and read every key back before it replaces the live one. A key Postfix does
    not answer as written is left out (and returned), and the map is compiled again without it, so
    one entry can never take the others down with it."""
    dropped: list[str] = []
    for attempt in range(2):
        tmp = directory / f".{name}.new"
        tmp.write_text("".join(f"{k} {v}\n" for k, v in entries))
        result = _postmap(f"hash:{tmp}")
        if result.returncode != 0:
            raise AgentError(f"postmap rejected {name}: {(result.stderr or result.stdout).strip()[-500:]}",
                             permanent=True)  # fmt: skip
        got = _lookup(tmp, [k for k, _ in entries]) if entries else {}
        bad = {k for k, v in entries if got.get(k) != v}
        if not bad:
            os.replace(f"{tmp}.db", directory / f"{name}.db")
            os.replace(tmp, directory / name)
            return dropped
        if attempt:
            raise AgentError(f"postmap -q in {name} did not answer {sorted(bad)[:5]} as written")
        dropped += sorted(bad)
        entries = [(k, v) for k, v in entries if k not in bad]
    return dropped


# --- suspension: a suspended plan's mail is deferred and its logins refused ------------------------
#
#   suspended_domains    Postfix access map for ``check_recipient_access``: ``domain 450 4.7.1 …``, so a
#                        sender's MTA keeps the mail and retries (delivered after the resume); a served
#                        domain under a suspended one gets ``DUNNO`` (no parent-domain match).
#   suspended_transport  Postfix ``transport_maps``: ``domain retry:…``; mail that did not come through
#                        smtpd (local submission, queued before the suspension) waits in the queue too.
#   suspended_users      Dovecot passwd-file of a ``deny = yes`` passdb: every mailbox of a suspended
#                        domain, whose IMAP/POP3/SMTP-AUTH logins fail even with the right password.

SUSPENDED_REPLY = "450 4.7.1 Mail for this domain is deferred: its hosting account is suspended"
SUSPENDED_TRANSPORT = "retry:4.7.1 its hosting account is suspended"


def suspended_domains(part: dict, domains: Iterable[str]) -> set[str]:
    """The part's suspended domains that are also its own (a name it does not serve is ignored)."""
    own = set(domains)
    names = part.get("suspended") if isinstance(part, dict) else None
    if not isinstance(names, list):
        return set()
    return {n.lower() for n in names if isinstance(n, str) and n.lower() in own}


def held_domains(directory: Path) -> set[str]:
    """Domains a mailbox restore holds: ``held/<domain>/<restore>`` (written by agent/backups.py's
    ``backup_mail_hold``), rendered suspended whatever the panel's spec says, until the last goes."""
    held = directory / "held"
    if not held.is_dir():
        return set()
    return {d.name for d in held.iterdir() if d.is_dir() and any(d.iterdir())}


def suspension_passdb(directory: Path) -> str:
    """The deny passdb, checked before the passwd-file: a user listed there cannot log in."""
    return f"""passdb {{
  driver = passwd-file
  args = {directory}/suspended_users
  deny = yes
}}
"""


def postfix_suspension_settings(root: Path) -> dict[str, str]:
    """What the node's Postfix ``main.cf`` needs for suspensions (``postconf -e`` each), next to its
    own restrictions: the access map before ``reject_unauth_destination``, the transport map."""
    directory = root / "mail"
    return {
        "smtpd_recipient_restrictions": f"check_recipient_access hash:{directory}/suspended_domains,"
        " reject_unauth_destination",
        "transport_maps": f"hash:{directory}/suspended_transport",
    }


def _publish_passwd_file(tmp: Path, target: Path) -> None:
    """Swap a Dovecot passwd-file in so that Dovecot sees the change. Its auth process re-reads the file
    only when the file's mtime, in whole seconds, or its size differs from what it read: a password
    changed in the same second as the last write (an Argon2 hash is as long as the one before) would be
    ignored until some later change. So the new file's mtime is moved past the old one's when needed."""
    os.chmod(tmp, 0o640)
    with contextlib.suppress(KeyError, PermissionError):  # Dovecot's auth reads it as its group
        os.chown(tmp, -1, grp.getgrnam(DOVECOT_GROUP).gr_gid)
    with contextlib.suppress(FileNotFoundError):
        old = int(target.stat().st_mtime)
        if int(tmp.stat().st_mtime) <= old:
            os.utime(tmp, (old + 1, old + 1))
    os.replace(tmp, target)


def _write_users(directory: Path, users: list[str]) -> None:
    tmp = directory / ".suspended_users.new"
    tmp.write_text("".join(f"{a}:\n" for a in users))
    _publish_passwd_file(tmp, directory / "suspended_users")


def ensure_suspended_users(directory: Path) -> None:
    """The deny passdb's file must exist before Dovecot reads the config (a missing one fails every login)."""
    if not (directory / "suspended_users").exists():
        _write_users(directory, [])


def write_suspension(directory: Path, suspended: set[str], domains: Iterable[str], addresses: Iterable[str]) -> None:
    """Both Postfix maps (checked like the others) and the Dovecot deny list, from the suspended
    domains; nothing suspended writes them empty, which is how a resume restores."""
    access = [(d, SUSPENDED_REPLY) for d in sorted(suspended)]
    access += [(d, "DUNNO") for d in sorted(set(domains) - suspended) if any(d.endswith("." + s) for s in suspended)]
    _write_map(directory, "suspended_domains", sorted(access))
    _write_map(directory, "suspended_transport", [(d, SUSPENDED_TRANSPORT) for d in sorted(suspended)])
    _write_users(directory, sorted(a for a in addresses if a.rpartition("@")[2] in suspended))


NODE_ID_RE = re.compile(r"^[0-9a-fA-F-]{36}$")


def mail_sync(root: Path, spec: dict) -> dict:
    """One panel node's mail, kept as ``mail/nodes/<node id>.json``; the maps are rendered from every
    such file, since several local nodes (of different tenants) share this machine and its daemons.

    A bad entry (refused by the rules, a key another node serves already, a script ``sievec``
    refuses) is left out of the shared files and reported in ``rejected`` for this node's own
    entries, so it fails only its own mail domain; everybody else's mail is still written."""
    node_id = str(spec.get("node") or "")
    if not NODE_ID_RE.match(node_id):
        raise AgentError("the mail spec needs its node id", permanent=True)
    clean, rejected = _entries(spec)
    directory = root / "mail"
    fragments = directory / "nodes"
    fragments.mkdir(parents=True, exist_ok=True)
    tmp = fragments / f".{node_id}.json.new"
    clean["suspended"] = sorted(suspended_domains(spec, clean["domains"]))
    tmp.write_text(json.dumps({"node": node_id, **clean}, sort_keys=True))
    os.chmod(tmp, 0o600)
    os.replace(tmp, fragments / f"{node_id}.json")

    def refuse(owner: str, kind: str, key: str, error: str) -> None:
        if owner == node_id:  # another node's faults are its own sync's to report
            rejected.append({"kind": kind, "key": key, "domain": key.rpartition("@")[2], "error": error})

    merged: dict = {"domains": [], "mailboxes": [], "aliases": []}
    owner_of: dict[str, str] = {}  # every key of the maps -> the node that serves it
    suspended: set[str] = set()  # the domains whose plan is suspended (mail deferred, logins refused)
    aliases_of: dict[str, set[str]] = {}  # mailbox -> the aliases of its own node (tenant) delivering to it
    for path in sorted(fragments.glob("*.json")):
        owner = path.name.removesuffix(".json")
        try:
            raw = json.loads(path.read_text())
            part, _ = _entries(raw)  # written before these rules, maybe
        except (OSError, ValueError, AttributeError):
            continue
        for d in part["domains"]:
            if owner_of.setdefault(d, owner) == owner:
                merged["domains"].append(d)
            else:
                refuse(owner, "domain", d, f"{d} is served on this machine for another node.")
        suspended |= {d for d in suspended_domains(raw, part["domains"]) if owner_of.get(d) == owner}
        for m in part["mailboxes"]:
            if (
                owner_of.get(m["address"].rpartition("@")[2]) == owner
                and owner_of.setdefault(m["address"], owner) == owner
            ):
                merged["mailboxes"].append({**m, "node": owner})
        boxes = {m["address"] for m in part["mailboxes"]}
        for alias in part["aliases"]:
            domain = alias["source"].rpartition("@")[2]
            if owner_of.get(domain) != owner or owner_of.setdefault(alias["source"], owner) != owner:
                continue
            merged["aliases"].append({**alias, "node": owner})
            if alias["source"].startswith("@"):
                continue  # a catch-all is not an address anybody writes to
            for destination in alias["destinations"]:
                if destination in boxes:
                    aliases_of.setdefault(destination, set()).add(alias["source"])
    domains, aliases = merged["domains"], merged["aliases"]
    enabled = sorted((m for m in merged["mailboxes"] if m["enabled"]), key=lambda m: m["address"])
    owners = {m["address"]: m["node"] for m in enabled} | {a["source"]: a["node"] for a in aliases}
    for key in _write_map(directory, "virtual_domains", [(d, "OK") for d in sorted(domains)]):
        refuse(owner_of.get(key, ""), "domain", key, "Postfix does not read it back as written.")
    boxes = []
    for m in enabled:
        local, _, domain = m["address"].partition("@")
        boxes.append((m["address"], f"{domain}/{local}/"))
    dropped = set(_write_map(directory, "virtual_mailboxes", boxes))
    alias_rows = sorted((a["source"], ",".join(a["destinations"])) for a in aliases)
    dropped |= set(_write_map(directory, "virtual_aliases", alias_rows))
    for key in sorted(dropped):
        refuse(owners.get(key, ""), "address", key, "Postfix does not read it back as written.")
    enabled = [m for m in enabled if m["address"] not in dropped]
    lines = []
    for m in enabled:
        quota = int(m.get("quota_mb") or 0)
        extra = f"userdb_quota_rule=*:storage={quota}M" if quota else ""
        lines.append(f"{m['address']}:{m['password_hash']}::::::{extra}\n")
    tmp = directory / ".passwd.new"
    tmp.write_text("".join(lines))
    _publish_passwd_file(tmp, directory / "passwd")
    suspended |= held_domains(directory)  # a restore's hold outlasts any sync made meanwhile (agent/backups.py)
    suspended &= set(domains)  # only a domain the maps serve (one Postfix refused is not served at all)
    write_suspension(directory, suspended, domains, [m["address"] for m in enabled])
    responders, failed = _write_sieve(directory, enabled, aliases_of)
    for address, error in failed:
        refuse(owners.get(address, ""), "autoresponder", address, error)
    write_dovecot_conf(root)
    return {"domains": len(domains), "mailboxes": len(enabled), "aliases": len(aliases), "autoresponders": responders,
            "suspended": len(suspended), "dir": str(directory), "rejected": rejected}  # fmt: skip


@OPERATIONS.register("mail_sync")
def mail_sync_operation(node: Node, args: dict) -> dict:
    """The operation ``mail_sync``: Postfix maps and the Dovecot passwd-file of the node's ``spec``."""
    return mail_sync(node.root, args.get("spec") or {})


# --- TLS for the mail hostnames: Postfix and Dovecot (apart from the maps above) ------------------

TLS_TAG_RE = re.compile(r"^[0-9a-f]{16}$")


def _tls_pairs(spec: dict) -> list[dict]:
    """Each certificate of the spec checked (key matches, chain in order, dates) before a byte is
    written; the first is the default, served to clients that send no (or an unknown) SNI name."""
    pairs = []
    for entry in spec.get("certificates") or []:
        if not isinstance(entry, dict):
            raise AgentError("a mail certificate must be an object", permanent=True)
        try:
            facts = pem.check_bundle(entry.get("certificate"), "", entry.get("private_key"))
        except pem.BadBundle as exc:
            raise AgentError(f"bad mail certificate {exc.field}: {exc.message}", permanent=True) from None
        names = [rules_hostname(n) for n in facts["names"]]
        pairs.append({"tag": facts["sha256"][:16], "names": names, "certificate": str(entry["certificate"]),
                      "private_key": str(entry["private_key"]), "sha256": facts["sha256"],
                      "not_after": facts["not_after"]})  # fmt: skip
    return pairs


def rules_hostname(name: str) -> str:
    if not isinstance(name, str) or not re.match(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$",
                                                 name.lower()):  # fmt: skip
        raise AgentError(f"bad mail hostname {name!r}", permanent=True)
    return name.lower()


def dovecot_tls_conf(pairs: list[dict], directory: Path) -> str:
    """Dovecot's TLS part: the default pair, and a ``local_name`` block per name of every pair (SNI)."""
    if not pairs:
        return "# Rendered by mPanel (agent/mail.py): no certificate for the mail hostnames yet.\n"
    default = pairs[0]
    out = [
        "# Rendered by mPanel (agent/mail.py); !include it from the node's dovecot.conf.",
        "ssl = yes",
        f"ssl_cert = <{directory / (default['tag'] + '.crt')}",
        f"ssl_key = <{directory / (default['tag'] + '.key')}",
    ]
    for pair in pairs:
        for name in pair["names"]:
            if name.startswith("*."):
                continue  # local_name matches names, not patterns
            out += [f"local_name {name} {{", f"  ssl_cert = <{directory / (pair['tag'] + '.crt')}",
                    f"  ssl_key = <{directory / (pair['tag'] + '.key')}", "}"]  # fmt: skip
    return "\n".join(out) + "\n"


def postfix_tls_conf(pairs: list[dict], directory: Path) -> str:
    """Postfix's main.cf lines: the default pair (``smtpd_tls_chain_files``: key then chain) and, for
    several certificates, an SNI map (``tls_server_sni_maps``) of each name to its own pair."""
    if not pairs:
        return ""
    default = pairs[0]
    lines = [
        "# Rendered by mPanel (agent/mail.py): merge into main.cf (postconf -e).",
        "smtpd_tls_security_level = may",
        f"smtpd_tls_chain_files = {directory / (default['tag'] + '.key')}, {directory / (default['tag'] + '.crt')}",
    ]
    if len(pairs) > 1:
        lines.append(f"tls_server_sni_maps = hash:{directory / 'sni'}")
    return "\n".join(lines) + "\n"


def mail_tls(root: Path, spec: dict) -> dict:
    """The mail hostnames' certificates on the node: each pair as ``mail/tls/<sha>.crt|key`` (the key
    0600 from its first byte), Dovecot's part (``dovecot-tls.conf``), Postfix's lines
    (``postfix-tls.cf``) and its SNI map (``sni``, compiled by ``postmap -F``, which reads the pairs
    into the map). Pairs no longer wanted are removed once the new files are in."""
    pairs = _tls_pairs(spec)
    directory = root / "mail" / "tls"
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for pair in pairs:
        key, crt = directory / f"{pair['tag']}.key", directory / f"{pair['tag']}.crt"
        if not key.exists() or key.read_text() != pair["private_key"]:
            tmp = directory / f".{pair['tag']}.key.new"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(pair["private_key"])
            os.replace(tmp, key)
        if not crt.exists() or crt.read_text() != pair["certificate"]:
            tmp = directory / f".{pair['tag']}.crt.new"
            tmp.write_text(pair["certificate"])
            os.replace(tmp, crt)
    if len(pairs) > 1:
        rows = []
        for pair in pairs:
            files = f"{directory / (pair['tag'] + '.key')}, {directory / (pair['tag'] + '.crt')}"
            rows += [f"{name} {files}" for name in pair["names"]]
        tmp = directory / ".sni.new"
        tmp.write_text("\n".join(rows) + "\n")
        made = _postmap("-F", f"hash:{tmp}")
        if made.returncode != 0:
            raise AgentError(f"postmap -F refused the SNI map: {made.stderr.strip()[:300]}", permanent=True)
        os.replace(tmp.with_name(".sni.new.db"), directory / "sni.db")
        os.replace(tmp, directory / "sni")
    else:
        for name in ("sni", "sni.db"):
            (directory / name).unlink(missing_ok=True)
    for name, text in (("dovecot-tls.conf", dovecot_tls_conf(pairs, directory)),
                       ("postfix-tls.cf", postfix_tls_conf(pairs, directory))):  # fmt: skip
        tmp = directory / f".{name}.new"
        tmp.write_text(text)
        os.replace(tmp, directory / name)
    keep = {p["tag"] for p in pairs}
    for path in directory.glob("*.crt"):
        if TLS_TAG_RE.match(path.stem) and path.stem not in keep:
            path.unlink(missing_ok=True)
            path.with_suffix(".key").unlink(missing_ok=True)
    applied = apply_tls(directory)
    return {"certificates": [{"names": p["names"], "sha256": p["sha256"], "not_after": p["not_after"]} for p in pairs],
            "dovecot": str(directory / "dovecot-tls.conf"), "postfix": str(directory / "postfix-tls.cf"),
            **applied}  # fmt: skip


TLS_KEYS = ("smtpd_tls_security_level", "smtpd_tls_chain_files", "tls_server_sni_maps")


def postfix_tls_settings(directory: Path) -> dict[str, str]:
    """The ``main.cf`` settings of ``postfix-tls.cf`` (what ``postconf -e`` merges), as a dict."""
    path = directory / "postfix-tls.cf"
    settings: dict[str, str] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.strip() and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def _run(*command: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise AgentError(f"{command[0]} is not installed on this node", permanent=True) from exc


def apply_tls(directory: Path) -> dict:
    """Where the node names its mail servers (``MPANEL_POSTFIX_CONFIG``: Postfix's configuration
    directory; ``MPANEL_DOVECOT_CONFIG``: dovecot.conf, which ``!include``s ``dovecot-tls.conf``), the
    new pairs are put in use: Postfix's ``main.cf`` gets the TLS settings merged with ``postconf -e``
    (the ones no longer rendered removed with ``postconf -X``), and both servers reload, so a renewed
    certificate is served on the next connection. Read from the node's environment, never the panel's."""
    applied: dict = {}
    postfix_dir = os.environ.get("MPANEL_POSTFIX_CONFIG", "")
    if postfix_dir:
        settings = postfix_tls_settings(directory)
        gone = [key for key in TLS_KEYS if key not in settings]
        if settings:
            done = _run("postconf", "-c", postfix_dir, "-e", *(f"{k} = {v}" for k, v in settings.items()))
            if done.returncode != 0:
                raise AgentError(f"postconf refused the TLS settings: {done.stderr.strip()[:300]}", permanent=True)
        if gone:
            _run("postconf", "-c", postfix_dir, "-X", *gone)
        if _run("postfix", "-c", postfix_dir, "status").returncode == 0:  # running: reload it
            done = _run("postfix", "-c", postfix_dir, "reload")
            if done.returncode != 0:
                raise AgentError(f"postfix reload failed: {done.stderr.strip()[:300]}")
        applied["postfix_configured"] = True
    dovecot_conf_path = os.environ.get("MPANEL_DOVECOT_CONFIG", "")
    if dovecot_conf_path:
        applied["dovecot_include_added"] = ensure_dovecot_include(Path(dovecot_conf_path),
                                                                  directory / "dovecot-tls.conf")  # fmt: skip
        done = _run("doveadm", "-c", dovecot_conf_path, "reload")
        if done.returncode != 0 and "not running" not in done.stderr:  # stopped: it reads them at start
            raise AgentError(f"dovecot reload failed: {done.stderr.strip()[:300]}")
        applied["dovecot_reloaded"] = done.returncode == 0
    return applied


def ensure_dovecot_include(conf: Path, part: Path) -> bool:
    """The node's ``dovecot.conf`` includes mPanel's TLS part (``!include_try``, so a Dovecot started
    before the first certificate still starts), added once at its end if no ``!include`` of it is
    there; the result is checked with ``doveconf`` and the file put back as it was if refused.
    Answers whether the line was added."""
    try:
        text = conf.read_text()
    except OSError as exc:
        raise AgentError(f"cannot read {conf} (MPANEL_DOVECOT_CONFIG): {exc.strerror}", permanent=True) from exc
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("!include", "!include_try") and Path(words[1]) == part:
            return False
    addition = "" if not text or text.endswith("\n") else "\n"
    addition += f"# mPanel: the mail hostnames' certificates (agent/mail.py)\n!include_try {part}\n"
    tmp = conf.with_name(f".{conf.name}.mpanel-new")
    tmp.write_text(text + addition)
    os.chmod(tmp, conf.stat().st_mode & 0o777)
    checked = _run("doveconf", "-c", str(tmp), "-n")
    if checked.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise AgentError(f"dovecot refused its configuration with mPanel's TLS part: {checked.stderr.strip()[:300]}",
                         permanent=True)  # fmt: skip
    os.replace(tmp, conf)
    return True


@OPERATIONS.register("mail_tls")
def mail_tls_operation(node: Node, args: dict) -> dict:
    """The operation ``mail_tls``: the certificates of the mail node's hostnames (never answered back)."""
    return mail_tls(node.root, args.get("spec") or {})
