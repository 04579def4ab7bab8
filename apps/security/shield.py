"""Shield: a per-tenant (and per-site) web application firewall policy, applied to the websites.

Every value that reaches the configuration is validated against a strict grammar first
(addresses parsed as CIDRs, user agents and paths from a safe character set, numbers bounded),
so the rendering cannot inject directives; ``nginx_check`` runs the real ``nginx -t`` on it.

A website's *effective* rules (``effective_rules``) are every enabled policy of its tenant that
names it: the tenant-wide one (``site`` empty) and the one whose ``site`` is one of the website's
host names. They all apply, the strictest way: every block list, user agent and path; every rate
limit (each in its own zone); the smallest body size; maintenance if any says so; and an address
must be on every allow list there is (their intersection). The website's job sends them to its
node in the site spec and ``agent.shield`` renders them into the vhost (one renderer: the preview
``GET …/nginx/`` uses it too). A policy change (``services.shield_policy_*``) enqueues a
``website.update`` job for each live website it names, so the change reaches the nodes; a policy of
one tenant never names another tenant's website. The nodes report denials in their metrics batch
(``record_node_events``).
"""

from __future__ import annotations

import ipaddress
import math
import re
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Max
from rest_framework.exceptions import ValidationError

from agent import shield as node_shield
from agent import signing
from apps.websites.models import Website

from .models import ShieldEvent, ShieldPolicy
from .policy import parse_cidrs

RULES = list(node_shield.RULES)
_SITE_RE = re.compile(
    r"^(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_UA_RE = node_shield.UA_RE  # the node checks the same grammar again
_PATH_RE = node_shield.PATH_RE


def clean_site(value: str) -> str:
    value = (value or "").strip().lower().rstrip(".")
    if value and not _SITE_RE.match(value):
        raise ValidationError({"site": ["Not a valid host name."]})
    return value


def clean_list(values, field: str, pattern: re.Pattern, what: str) -> list[str]:
    if not isinstance(values, list):
        raise ValidationError({field: ["Expected a list."]})
    if len(values) > 100:
        raise ValidationError({field: ["At most 100 entries."]})
    out = []
    for value in values:
        if not isinstance(value, str) or not pattern.match(value):
            raise ValidationError({field: [f"Not a valid {what}: {value!r}."]})
        if value not in out:
            out.append(value)
    return out


def clean_policy_data(data: dict) -> dict:
    data = dict(data)
    if "site" in data:
        data["site"] = clean_site(data["site"])
    for field in ("allow_cidrs", "block_cidrs"):
        if field in data:
            data[field] = parse_cidrs(data[field], field)
    if "blocked_user_agents" in data:
        data["blocked_user_agents"] = clean_list(
            data["blocked_user_agents"], "blocked_user_agents", _UA_RE, "user agent"
        )
    if "blocked_paths" in data:
        data["blocked_paths"] = clean_list(data["blocked_paths"], "blocked_paths", _PATH_RE, "path")
    return data


# --- reads ------------------------------------------------------------------------------------------


def shield_event_counts(queryset) -> list[dict]:
    return list(
        queryset.values("rule").annotate(count=Count("id"), last_seen=Max("occurred_at")).order_by("-count", "rule")
    )


# --- applying: effective rules and resync ----------------------------------------------------------------


def policy_rules(policy: ShieldPolicy) -> dict:
    """One policy as the node takes it (``agent.shield.validate``)."""
    rate_limits = []
    if policy.rate_limit_per_second:
        rate_limits.append(
            {"zone": policy.pk.hex, "rate": int(policy.rate_limit_per_second), "burst": int(policy.rate_limit_burst)}
        )
    return {
        "rate_limits": rate_limits,
        "block_cidrs": list(policy.block_cidrs),
        "allow_cidrs": list(policy.allow_cidrs) or None,
        "blocked_user_agents": list(policy.blocked_user_agents),
        "blocked_paths": list(policy.blocked_paths),
        "max_body_size_kb": policy.max_body_size_kb or None,
        "maintenance_mode": bool(policy.maintenance_mode),
    }


def _intersection(left: list[str], right: list[str]) -> list[str]:
    """Addresses in both lists of CIDRs: two networks overlap only when one holds the other."""
    out = []
    for a in map(ipaddress.ip_network, left):
        for b in map(ipaddress.ip_network, right):
            if a.version == b.version and (a.subnet_of(b) or b.subnet_of(a)):
                out.append(a if a.prefixlen >= b.prefixlen else b)
    by_version = [ipaddress.collapse_addresses([n for n in out if n.version == v]) for v in (4, 6)]
    return [str(n) for group in by_version for n in group]


def merge_rules(layers: list[dict]) -> dict | None:
    """Several policies' rules as one set, the strictest way (see the module's docstring)."""
    if not layers:
        return None
    allow = None
    for layer in layers:
        if layer["allow_cidrs"] is not None:
            allow = list(layer["allow_cidrs"]) if allow is None else _intersection(allow, layer["allow_cidrs"])
    bodies = [layer["max_body_size_kb"] for layer in layers if layer["max_body_size_kb"]]
    return {
        "rate_limits": [limit for layer in layers for limit in layer["rate_limits"]],
        "block_cidrs": list(dict.fromkeys(c for layer in layers for c in layer["block_cidrs"])),
        "allow_cidrs": allow,
        "blocked_user_agents": list(dict.fromkeys(v for layer in layers for v in layer["blocked_user_agents"])),
        "blocked_paths": list(dict.fromkeys(v for layer in layers for v in layer["blocked_paths"])),
        "max_body_size_kb": min(bodies) if bodies else None,
        "maintenance_mode": any(layer["maintenance_mode"] for layer in layers),
    }


def effective_rules(website) -> dict | None:
    """The rules the website's vhost carries: its tenant's enabled policies that name it."""
    policies = ShieldPolicy.all_tenants.filter(
        tenant_id=website.tenant_id, enabled=True, site__in=["", *website.domains]
    ).order_by("site", "pk")
    return merge_rules([policy_rules(p) for p in policies])


# --- preview and check ----------------------------------------------------------------------------------

PREVIEW_SITE = "preview"
PREVIEW_LOG = "logs/shield.log"  # relative to nginx's prefix (``nginx_check`` runs with ``-p``)


def render_http(policy: ShieldPolicy) -> str:
    """The policy alone, as the node renders it at ``http`` level (after the node-wide part: the
    log format and shared variables)."""
    if not policy.enabled:
        return ""
    rules = node_shield.validate(policy_rules(policy))
    return node_shield.SHARED_TEXT + node_shield.render_http(PREVIEW_SITE, rules)


def render_server(policy: ShieldPolicy) -> str:
    """The policy alone, as the node renders it in the site's ``server`` block."""
    header = f"# mPanel Shield for tenant {policy.tenant_id}, site {policy.site or '*'}\n"
    if not policy.enabled:
        return header + "# disabled\n"
    rules = node_shield.validate(policy_rules(policy))
    return header + node_shield.render_server(PREVIEW_SITE, rules, PREVIEW_LOG, indent="")


class NginxCheckFailed(Exception):
    pass


def nginx_check(http: str, server: str, *, nginx: str | None = None) -> str:
    """Runs ``nginx -t`` on a minimal configuration that includes the rendered snippets; returns its output."""
    binary = nginx or shutil.which("nginx") or "/usr/sbin/nginx"
    with tempfile.TemporaryDirectory(prefix="mpanel-shield-") as tmp:
        root = Path(tmp)
        (root / "logs").mkdir()
        (root / "http.conf").write_text(http)
        (root / "server.conf").write_text(server)
        (root / "nginx.conf").write_text(
            f"""pid {root}/nginx.pid;
error_log {root}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/http.conf;
    server {{
        listen 127.0.0.1:8089;
        server_name example.test;
        include {root}/server.conf;
        location / {{ return 200; }}
    }}
}}
"""
        )
        result = subprocess.run(
            [binary, "-t", "-q", "-p", f"{root}/", "-e", str(root / "error.log"), "-c", str(root / "nginx.conf")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise NginxCheckFailed(result.stderr or result.stdout)
        return result.stderr


# --- denials reported by the nodes ------------------------------------------------------------------------

_EVENT_STRINGS = {"site": 64, "method": 10, "path": 1000, "user_agent": 255, "host": 253}


def _event_problem(item, oldest: float, newest: float) -> str | None:
    if not isinstance(item, dict):
        return "An event is an object."
    if not isinstance(item.get("id"), str) or not node_shield.REQUEST_ID_RE.match(item["id"]):
        return "id must be nginx's $request_id (32 hex digits)."
    ts = item.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return "ts must be unix seconds."
    if not oldest <= ts <= newest:
        return f"ts is outside the accepted window ({int(oldest)}..{int(newest)})."
    if item.get("rule") not in RULES:
        return f"rule must be one of {RULES}."
    try:
        ipaddress.ip_address(item.get("ip"))
    except ValueError:
        return "ip is not an address."
    for field, size in _EVENT_STRINGS.items():
        if not isinstance(item.get(field, ""), str) or len(item.get(field, "")) > size:
            return f"{field} must be a string of at most {size} characters."
    return None


def parse_node_events(events) -> list[dict]:
    """The ``shield`` list of a node's metrics batch, checked: a 400 naming the first bad events."""
    if not isinstance(events, list):
        raise ValidationError({"shield": ["A list of events is expected."]})
    limit = settings.MPANEL_SHIELD_MAX_EVENTS
    if len(events) > limit:
        raise ValidationError({"shield": [f"At most {limit} events per request."]})
    now = time.time()
    oldest, newest = now - settings.MPANEL_METRICS_MAX_AGE, now + signing.TOLERANCE
    errors = []
    clean = []
    for i, item in enumerate(events):
        problem = _event_problem(item, oldest, newest)
        if problem:
            errors.append(f"event {i}: {problem}")
            if len(errors) >= 20:
                break
            continue
        # PostgreSQL text holds no NUL: a request's own bytes must not make the batch fail.
        clean.append(
            {
                "id": item["id"],
                "ts": float(item["ts"]),
                "ip": str(ipaddress.ip_address(item["ip"])),
                "rule": item["rule"],
                **{field: item.get(field, "").replace("\x00", "") for field in _EVENT_STRINGS},
            }
        )
    if errors:
        raise ValidationError({"shield": errors})
    return clean


def record_node_events(*, node, events: list[dict]) -> dict:
    """Store a node's checked events as Shield events of the tenant of the website each names.

    Only websites placed on this node count (a node reports for its own sites, never another's);
    an event naming any other site id is dropped (``unmatched``). A request already stored (a batch
    sent again) is skipped. Machine data, like the samples it comes with: not audited per batch."""
    if not events:
        return {"received": 0, "stored": 0, "unmatched": 0}
    websites = {
        w.site_id: w
        for w in Website.all_tenants.filter(node=node, site_id__in={e["site"] for e in events}).only(
            "pk", "tenant_id", "site_id", "primary_domain"
        )
    }
    seen = set(
        ShieldEvent.all_tenants.filter(node=node, request_id__in=[e["id"] for e in events]).values_list(
            "request_id", flat=True
        )
    )
    rows = {}
    for e in events:
        website = websites.get(e["site"])
        if website is None or e["id"] in seen or e["id"] in rows:
            continue
        rows[e["id"]] = ShieldEvent(
            tenant_id=website.tenant_id,
            node=node,
            website=website,
            request_id=e["id"],
            occurred_at=datetime.fromtimestamp(e["ts"], tz=UTC),
            ip=e["ip"],
            rule=e["rule"],
            site=website.primary_domain,
            method=e["method"],
            path=e["path"],
            user_agent=e["user_agent"],
        )
    ShieldEvent.all_tenants.bulk_create(list(rows.values()), ignore_conflicts=True)
    unmatched = sum(1 for e in events if e["site"] not in websites)
    return {"received": len(events), "stored": len(rows), "unmatched": unmatched}
