"""Shield on the node: a site's effective rules rendered into its vhost, and the denials read back
from nginx's log for the reporter. Standard library only, like the rest of the agent.

The panel sends a site's *effective* rules (its tenant-wide and per-site policies already merged,
``apps.security.shield.effective_rules``) in the site spec under ``shield``; they are checked again
here (the node trusts nothing it renders) and rendered in two parts:

* http level (the top of the site's file, which the node's ``nginx.conf`` includes inside ``http``):
  one ``limit_req_zone`` per rate limit, ``geo`` tables of the blocked and allowed addresses, the
  ``map`` that names the rule behind a denial, and the ``log_format`` of the Shield log. Every
  name carries the site's key, so no two sites (of one tenant or of two) ever declare the same one;
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
MAX_ENTRIES = 1000  # per list, after merging (each policy allows 100)
MAX_RATE = 100_000
MAX_BODY_KB = 10 * 1024 * 1024
ZONE_SIZE = "1m"  # ~16 000 addresses per site and policy; nginx evicts the oldest when full
LOG_NAME = "shield.log"
RULE_VARIABLE = "$mpanel_shield_rule"  # set by the server-level checks; one per request, shared by name


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
    _check(isinstance(limits, list) and len(limits) <= 10, "shield rate_limits must be a list of at most 10")
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


def _sets_rule(rules: dict) -> bool:
    """Whether a server-level check names its rule (``set``): nginx refuses a variable never set."""
    return bool(
        rules["block_cidrs"]
        or rules["allow_cidrs"] is not None
        or rules["maintenance_mode"]
        or rules["blocked_user_agents"]
        or rules["blocked_paths"]
    )


def site_key(site_id: str) -> str:
    """The site's part of nginx names (variables allow letters, digits and ``_`` only). The panel's
    ids are letters and digits and used as they are; any other id is hashed, into a form (with
    ``_``) that no plain id can take."""
    if re.fullmatch(r"[A-Za-z0-9]{1,64}", site_id):
        return site_id
    return "h_" + hashlib.sha256(site_id.encode()).hexdigest()[:24]


def _regex(values: list[str]) -> str:
    # The grammar above admits no quote, brace or ``$``; re.escape makes every other character literal.
    return "|".join(re.escape(v) for v in values)


def render_http(site_id: str, rules: dict | None) -> str:
    """Directives for nginx's ``http`` block (the top of the site's file)."""
    if not rules:
        return ""
    key = site_key(site_id)
    status_rules = []
    if rules["rate_limits"]:
        status_rules.append('    "~^:429:REJECTED:" rate_limit;\n')
    if rules["max_body_size_kb"]:
        # nginx's own 413 (no upstream answered it): the body limit, not the application.
        status_rules.append('    "~^:413:[A-Z_]*:$" body_size;\n')
    fields = (
        f'"request_id":"$request_id","time":"$msec","site":"{site_id}","ip":"$remote_addr",'
        f'"rule":"$mpanel_shield_log_{key}","status":"$status","method":"$request_method",'
        '"path":"$request_uri","user_agent":"$http_user_agent","host":"$host"'
    )
    out = [
        f"# mPanel Shield of {site_id} (http level)\n",
        f"log_format mpanel_shield_{key} escape=json '{{{fields}}}';\n",
        f'map "{RULE_VARIABLE if _sets_rule(rules) else ""}:$status:$limit_req_status:$upstream_status" '
        f"$mpanel_shield_log_{key} {{\n",
        '    default "";\n',
        '    "~^([a-z_]+):" $1;\n',
        *status_rules,
        "}\n",
    ]
    for limit in rules["rate_limits"]:
        out.append(
            f"limit_req_zone $binary_remote_addr zone=mpanel_shield_{key}_{limit['zone']}:{ZONE_SIZE} "
            f"rate={limit['rate']}r/s;\n"
        )
    if rules["block_cidrs"]:
        out.append(_geo(f"mpanel_shield_block_{key}", rules["block_cidrs"]))
    if rules["allow_cidrs"] is not None:
        out.append(_geo(f"mpanel_shield_allow_{key}", rules["allow_cidrs"]))
    return "".join(out)


def _geo(variable: str, cidrs: list[str]) -> str:
    return f"geo ${variable} {{\n    default 0;\n" + "".join(f"    {c} 1;\n" for c in cidrs) + "}\n"


def render_server(site_id: str, rules: dict | None, log_path: str | os.PathLike, indent: str = "    ") -> str:
    """Directives for the site's ``server`` blocks; without rules, its access log stays off."""
    if not rules:
        return f"{indent}access_log off;\n"
    key = site_key(site_id)
    lines = [
        f"# mPanel Shield of {site_id}",
        f"access_log {log_path} mpanel_shield_{key} if=$mpanel_shield_log_{key};",
        "uninitialized_variable_warn off;",
    ]

    def deny(rule: str, status: int) -> str:
        return f"set {RULE_VARIABLE} {rule}; return {status};"

    if rules["block_cidrs"]:
        lines.append(f"if ($mpanel_shield_block_{key}) {{ {deny('ip_block', 403)} }}")
    if rules["allow_cidrs"] is not None:
        refused = deny("maintenance", 503) if rules["maintenance_mode"] else deny("ip_allow", 403)
        lines.append(f"if ($mpanel_shield_allow_{key} = 0) {{ {refused} }}")
    elif rules["maintenance_mode"]:
        lines.append(deny("maintenance", 503))
    if rules["blocked_user_agents"]:
        lines.append(
            f'if ($http_user_agent ~* "({_regex(rules["blocked_user_agents"])})") {{ {deny("user_agent", 403)} }}'
        )
    if rules["blocked_paths"]:
        lines.append(f'if ($uri ~ "^({_regex(rules["blocked_paths"])})") {{ {deny("path", 403)} }}')
    if rules["max_body_size_kb"]:
        lines.append(f"client_max_body_size {rules['max_body_size_kb']}k;")
    for limit in rules["rate_limits"]:
        burst = f" burst={limit['burst']}" if limit["burst"] else ""  # nginx refuses burst=0
        lines.append(f"limit_req zone=mpanel_shield_{key}_{limit['zone']}{burst} nodelay;")
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
