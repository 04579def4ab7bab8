"""Shield on the node: a site's effective rules rendered into its vhost, and the denials read back
from nginx's log for the reporter. Standard library only, like the rest of the agent.

The panel sends a site's *effective* rules (its tenant-wide and per-site policies already merged,
``apps.security.shield.effective_rules``) in the site spec under ``shield``; they are checked again
here (the node trusts nothing it renders) and rendered in three parts:

* node-wide, ``sites/_mpanel_shield.conf`` (``SHARED_TEXT``, the same on every node): the Shield
  log's format and the variables the checks share (the rule behind a denial, the site);
* http level (the top of the site's file, which the node's ``nginx.conf`` includes inside ``http``):
  one ``limit_req_zone`` per rate limit and the site's address table (``geo``). Every name carries
  the site, so no two sites (of one tenant or of two) ever declare the same one;
* server level: the checks, in the server rewrite phase (before any redirect or location), in this
  order: blocked address (403), address not on the allow list (403, or 503 in maintenance: an
  allowed address still reaches a site in maintenance), maintenance (503), user agent (403), path
  (403); then the body size (413) and the rate limits (429, past the burst).

Each denial is one JSON line in ``<web root>/logs/shield.log`` (``access_log … if=``: only
denials are written): the request id (the panel stores a request once), time, site, address,
rule, status, method, path, user agent and host. ``ShieldLog`` reads the lines not yet reported.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import time
from pathlib import Path

RULES = ("rate_limit", "ip_block", "ip_allow", "user_agent", "path", "body_size", "maintenance")
UA_RE = re.compile(r"^[A-Za-z0-9 ._/+:;()-]{2,100}$")
PATH_RE = re.compile(r"^/[A-Za-z0-9._~/%+-]{0,200}$")
ZONE_RE = re.compile(r"^[0-9a-f]{1,32}$")
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_ENTRIES = 10_000  # per list, after merging (each policy allows 100; a site names up to 100 hosts)
MAX_RATE = 100_000
MAX_BODY_KB = 10 * 1024 * 1024
ZONE_SIZE = "1m"  # ~16 000 addresses per site and policy; nginx evicts the oldest when full
LOG_NAME = "shield.log"


class ShieldError(ValueError):
    pass


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ShieldError(message)


def _cidrs(values, field: str) -> list[str]:
    _check(isinstance(values, list) and len(values) <= MAX_ENTRIES, f"shield {field} must be a list")
    out = []
    for value in values:
        try:
            network = ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            raise ShieldError(f"shield {field}: bad address {value!r}") from None
        if str(network) not in out:
            out.append(str(network))
    return out


def _strings(values, field: str, pattern: re.Pattern) -> list[str]:
    _check(isinstance(values, list) and len(values) <= MAX_ENTRIES, f"shield {field} must be a list")
    for value in values:
        _check(isinstance(value, str) and bool(pattern.match(value)), f"shield {field}: bad value {value!r}")
    return list(dict.fromkeys(values))


def _int(value, field: str, low: int, high: int) -> int:
    _check(type(value) is int and low <= value <= high, f"shield {field} must be an integer {low}..{high}")
    return value


def validate(rules) -> dict | None:
    """The effective rules as the panel sends them, checked; None (or {}) means no Shield."""
    if not rules:
        return None
    _check(isinstance(rules, dict), "shield must be an object")
    limits = rules.get("rate_limits") or []
    _check(isinstance(limits, list) and len(limits) <= 128, "shield rate_limits must be a list of at most 128")
    clean_limits = []
    for limit in limits:
        _check(isinstance(limit, dict), "a shield rate limit is an object")
        zone = limit.get("zone")
        _check(isinstance(zone, str) and bool(ZONE_RE.match(zone)), f"bad shield zone {zone!r}")
        clean_limits.append(
            {
                "zone": zone,
                "rate": _int(limit.get("rate"), "rate", 1, MAX_RATE),
                "burst": _int(limit.get("burst", 0), "burst", 0, MAX_RATE),
            }
        )
    _check(len({limit["zone"] for limit in clean_limits}) == len(clean_limits), "shield zones must differ")
    allow = rules.get("allow_cidrs")
    body = rules.get("max_body_size_kb")
    clean = {
        "rate_limits": clean_limits,
        "block_cidrs": _cidrs(rules.get("block_cidrs") or [], "block_cidrs"),
        # None: every address; a list (even empty): only these.
        "allow_cidrs": None if allow is None else _cidrs(allow, "allow_cidrs"),
        "blocked_user_agents": _strings(rules.get("blocked_user_agents") or [], "blocked_user_agents", UA_RE),
        "blocked_paths": _strings(rules.get("blocked_paths") or [], "blocked_paths", PATH_RE),
        "max_body_size_kb": None if body is None else _int(body, "max_body_size_kb", 1, MAX_BODY_KB),
        "maintenance_mode": rules.get("maintenance_mode") is True,
    }
    return clean if any(v not in (None, [], False) for v in clean.values()) else None


# The node-wide part, one file in ``sites/`` (the site files' glob includes it; a site id cannot
# start with ``_``): the log format and the variables every site's checks share. Declaring the
# variables with ``map`` lets each server ``set`` them and any other server read them empty.
SHARED_CONF = "_mpanel_shield.conf"
LOG_FORMAT = "mpanel_shield"
SHARED_TEXT = """# mPanel Shield, node-wide (written by the node agent; edits are overwritten)
map $status $mpanel_shield_rule { default ""; }
map $status $mpanel_shield_site { default ""; }
map $status $mpanel_shield_body { default ""; }
map "$mpanel_shield_rule:$status:$limit_req_status:$upstream_status:$mpanel_shield_body" $mpanel_shield_log {
    default "";
    "~^([a-z_]+):" $1;
    "~^:429:REJECTED:" rate_limit;
    "~^:413:[A-Z_]*::1$" body_size;
}
log_format mpanel_shield escape=json '{"request_id":"$request_id","time":"$msec","site":"$mpanel_shield_site",'
    '"ip":"$remote_addr","rule":"$mpanel_shield_log","status":"$status","method":"$request_method",'
    '"path":"$request_uri","user_agent":"$http_user_agent","host":"$host"}';
"""


def address_variable(site_id: str) -> str:
    """The site's address table's variable. Short, because nginx keeps every variable's name in
    one hash (``variables_hash_bucket_size``): 80 bits of a hash of the site id, which no two
    sites of a node share in practice."""
    return f"$mps_{hashlib.sha256(site_id.encode()).hexdigest()[:20]}"


def _regex(values: list[str]) -> str:
    # The grammar above admits no quote, brace or ``$``; re.escape makes every other character literal.
    return "|".join(re.escape(v) for v in values)


def _addresses(rules: dict) -> list[tuple[str, int]]:
    """The site's address table: 1 blocked, 0 allowed, the default 2 (not on the allow list) when
    there is an allow list. nginx's ``geo`` takes the longest match, so an allowed network inside a
    blocked one is left out: a block always wins."""
    blocked = [ipaddress.ip_network(c) for c in rules["block_cidrs"]]
    allowed = [
        a
        for a in map(ipaddress.ip_network, rules["allow_cidrs"] or [])
        if not any(a.version == b.version and a.subnet_of(b) for b in blocked)
    ]
    return [(str(b), 1) for b in blocked] + [(str(a), 0) for a in allowed]


def render_http(site_id: str, rules: dict | None) -> str:
    """Directives for nginx's ``http`` block (the top of the site's file): the rate limits' zones
    and the address table. Zone names carry the whole site id (unique on the panel) and the
    policy's id: a second zone of one name would be refused by ``nginx -t``, never shared."""
    if not rules:
        return ""
    out = [f"# mPanel Shield of {site_id} (http level)\n"]
    for limit in rules["rate_limits"]:
        out.append(
            f"limit_req_zone $binary_remote_addr zone=mpanel_shield_{site_id}_{limit['zone']}:{ZONE_SIZE} "
            f"rate={limit['rate']}r/s;\n"
        )
    if rules["block_cidrs"] or rules["allow_cidrs"] is not None:
        default = 2 if rules["allow_cidrs"] is not None else 0
        out.append(f"geo {address_variable(site_id)} {{\n    default {default};\n")
        out += [f"    {network} {value};\n" for network, value in _addresses(rules)]
        out.append("}\n")
    return "".join(out)


def render_server(site_id: str, rules: dict | None, log_path: str | os.PathLike, indent: str = "    ") -> str:
    """Directives for the site's ``server`` blocks; without rules, none (the site's own access log,
    agent/bandwidth.py, is the only one: ``access_log off`` would cancel it)."""
    if not rules:
        return ""
    lines = [
        f"# mPanel Shield of {site_id}",
        f"set $mpanel_shield_site {site_id};",
        f"access_log {log_path} {LOG_FORMAT} if=$mpanel_shield_log;",
    ]

    def deny(rule: str, status: int) -> str:
        return f"set $mpanel_shield_rule {rule}; return {status};"

    addresses = address_variable(site_id)
    if rules["block_cidrs"]:
        lines.append(f"if ({addresses} = 1) {{ {deny('ip_block', 403)} }}")
    if rules["allow_cidrs"] is not None:
        refused = deny("maintenance", 503) if rules["maintenance_mode"] else deny("ip_allow", 403)
        lines.append(f"if ({addresses} = 2) {{ {refused} }}")
    elif rules["maintenance_mode"]:
        lines.append(deny("maintenance", 503))
    if rules["blocked_user_agents"]:
        lines.append(
            f'if ($http_user_agent ~* "({_regex(rules["blocked_user_agents"])})") {{ {deny("user_agent", 403)} }}'
        )
    if rules["blocked_paths"]:
        lines.append(f'if ($uri ~ "^({_regex(rules["blocked_paths"])})") {{ {deny("path", 403)} }}')
    if rules["max_body_size_kb"]:
        lines.append("set $mpanel_shield_body 1;")  # a 413 here is this limit's (the log's map asks)
        lines.append(f"client_max_body_size {rules['max_body_size_kb']}k;")
    for limit in rules["rate_limits"]:
        burst = f" burst={limit['burst']}" if limit["burst"] else ""  # nginx refuses burst=0
        lines.append(f"limit_req zone=mpanel_shield_{site_id}_{limit['zone']}{burst} nodelay;")
    if rules["rate_limits"]:
        lines.append("limit_req_status 429;")
    return "".join(f"{indent}{line}\n" for line in lines)


# --- the log, read back --------------------------------------------------------------------------


def log_path(web_root: str | os.PathLike) -> Path:
    return Path(web_root) / "logs" / LOG_NAME


def _event(line: bytes) -> dict | None:
    """One log line as the panel's ingest takes it; None for a line that is not a Shield denial."""
    try:
        # nginx writes a request's bytes as they came: invalid UTF-8 must not hide a denial.
        raw = json.loads(line.decode("utf-8", "replace"))
        rule, request_id = raw["rule"], raw["request_id"]
        ts = float(raw["time"])
        ip = str(ipaddress.ip_address(raw["ip"]))
    except (ValueError, KeyError, TypeError):
        return None
    if rule not in RULES or not REQUEST_ID_RE.match(str(request_id)):
        return None

    def text(field: str, size: int) -> str:
        return str(raw.get(field, "")).replace("\x00", "")[:size]

    return {
        "id": request_id,
        "ts": ts,
        "site": text("site", 64),
        "ip": ip,
        "rule": rule,
        "method": text("method", 10),
        "path": text("path", 1000),
        "user_agent": text("user_agent", 255),
        "host": text("host", 253),
    }


class ShieldLog:
    """The Shield log's lines not yet reported. ``read`` answers the events and the position after
    them; ``commit(position)`` (once the panel took them) makes the next ``read`` start there, so
    a batch the panel did not take is read again. The position is kept in ``state`` (inode and
    offset); a log rotated away (``shield.log.1``, as logrotate leaves it) is finished first."""

    def __init__(self, path: str | os.PathLike, state: str | os.PathLike, *, limit: int = 2000, max_age: float = 0):
        self.path = Path(path)
        self.state = Path(state)
        self.limit = limit
        self.max_age = max_age  # events older than this are skipped (the panel refuses them); 0: keep all

    def _position(self) -> dict:
        try:
            position = json.loads(self.state.read_text())
            return {"inode": int(position["inode"]), "offset": int(position["offset"])}
        except (OSError, ValueError, KeyError, TypeError):
            return {"inode": 0, "offset": 0}

    def read(self) -> tuple[list[dict], dict]:
        position = self._position()
        rotated = self.path.with_name(self.path.name + ".1")
        sources = []
        try:
            current = self.path.stat().st_ino
        except FileNotFoundError:
            current = 0
        if position["inode"] and position["inode"] != current:
            try:
                if rotated.stat().st_ino == position["inode"]:
                    sources.append((rotated, position["inode"], position["offset"]))
            except FileNotFoundError:
                pass
            position = {"inode": current, "offset": 0}
        if current:
            offset = position["offset"] if position["inode"] == current else 0
            if offset > self.path.stat().st_size:  # truncated in place
                offset = 0
            sources.append((self.path, current, offset))
        events: list[dict] = []
        oldest = time.time() - self.max_age if self.max_age else 0
        end = {"inode": current, "offset": 0}
        for path, inode, offset in sources:
            end = {"inode": inode, "offset": offset}
            with open(path, "rb") as f:
                f.seek(offset)
                for line in f:
                    if not line.endswith(b"\n") or len(events) >= self.limit:
                        break  # a line nginx is still writing, or enough for one batch
                    end = {"inode": inode, "offset": end["offset"] + len(line)}
                    event = _event(line)
                    if event and event["ts"] >= oldest:
                        events.append(event)
            if len(events) >= self.limit:
                break
        return events, end

    def commit(self, position: dict) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state.with_name(f".{self.state.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(position))
        os.replace(tmp, self.state)
