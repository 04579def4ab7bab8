"""Shield: a per-tenant (and per-site) web application firewall policy rendered to nginx.

Every value that reaches the configuration is validated against a strict grammar first
(addresses parsed as CIDRs, user agents and paths from a safe character set, numbers bounded),
so the rendering cannot inject directives; ``nginx_check`` runs the real ``nginx -t`` on it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from rest_framework.exceptions import ValidationError

from apps.audit import services as audit
from apps.common.exceptions import Conflict

from .models import ShieldEvent, ShieldPolicy
from .policy import parse_cidrs

RULES = ["rate_limit", "ip_block", "ip_allow", "user_agent", "path", "body_size", "maintenance"]
_SITE_RE = re.compile(
    r"^(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_UA_RE = re.compile(r"^[A-Za-z0-9 ._/+:;()-]{2,100}$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/%+-]{0,200}$")
POLICY_FIELDS = [
    "site",
    "enabled",
    "rate_limit_per_second",
    "rate_limit_burst",
    "allow_cidrs",
    "block_cidrs",
    "blocked_user_agents",
    "blocked_paths",
    "max_body_size_kb",
    "maintenance_mode",
]


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


# --- writes -----------------------------------------------------------------------------------------


@transaction.atomic
def shield_policy_create(*, tenant, data: dict) -> ShieldPolicy:
    data = clean_policy_data(data)
    try:
        with transaction.atomic():
            policy = ShieldPolicy.objects.create(tenant=tenant, **data)
    except IntegrityError as exc:
        raise Conflict("This site has a shield policy already.", code="duplicate_site") from exc
    audit.record(action="shield.policy_create", obj=policy, after=audit.snapshot(policy, POLICY_FIELDS))
    return policy


@transaction.atomic
def shield_policy_update(*, policy: ShieldPolicy, data: dict) -> ShieldPolicy:
    policy = ShieldPolicy.objects.select_for_update().get(pk=policy.pk)
    before = audit.snapshot(policy, POLICY_FIELDS)
    for field, value in clean_policy_data(data).items():
        setattr(policy, field, value)
    try:
        with transaction.atomic():
            policy.save()
    except IntegrityError as exc:
        raise Conflict("This site has a shield policy already.", code="duplicate_site") from exc
    audit.record(action="shield.policy_update", obj=policy, before=before, after=audit.snapshot(policy, POLICY_FIELDS))
    return policy


@transaction.atomic
def shield_policy_delete(*, policy: ShieldPolicy) -> None:
    audit.record(action="shield.policy_delete", obj=policy, before=audit.snapshot(policy, POLICY_FIELDS))
    policy.delete()


@transaction.atomic
def shield_events_ingest(*, tenant, events: list[dict]) -> int:
    rows = [ShieldEvent(tenant=tenant, **event) for event in events]
    ShieldEvent.objects.bulk_create(rows)
    audit.record(
        action="shield.events_ingest",
        tenant=tenant,
        object_type="security.shieldevent",
        changes={"count": [0, len(rows)]},
    )
    return len(rows)


def shield_event_counts(queryset) -> list[dict]:
    return list(
        queryset.values("rule").annotate(count=Count("id"), last_seen=Max("occurred_at")).order_by("-count", "rule")
    )


# --- rendering ----------------------------------------------------------------------------------------


def zone_name(policy: ShieldPolicy) -> str:
    return f"mpanel_shield_{policy.pk.hex}"


def render_http(policy: ShieldPolicy) -> str:
    """Directives for nginx's ``http`` block (the rate limit's shared zone)."""
    if not policy.enabled or not policy.rate_limit_per_second:
        return ""
    rate = int(policy.rate_limit_per_second)
    return f"limit_req_zone $binary_remote_addr zone={zone_name(policy)}:10m rate={rate}r/s;\n"


def _regex_alternatives(values: list[str]) -> str:
    return "|".join(re.escape(v).replace('"', "") for v in values)


def render_server(policy: ShieldPolicy) -> str:
    """Directives for the site's ``server`` block."""
    lines = [f"# mPanel Shield for tenant {policy.tenant_id}, site {policy.site or '*'}"]
    if not policy.enabled:
        lines.append("# disabled")
        return "\n".join(lines) + "\n"
    if policy.maintenance_mode:
        lines.append("return 503;")
    if policy.max_body_size_kb:
        lines.append(f"client_max_body_size {int(policy.max_body_size_kb)}k;")
    if policy.rate_limit_per_second:
        burst = f" burst={int(policy.rate_limit_burst)}" if policy.rate_limit_burst else ""  # nginx refuses burst=0
        lines.append(f"limit_req zone={zone_name(policy)}{burst} nodelay;")
        lines.append("limit_req_status 429;")
    for cidr in policy.block_cidrs:
        lines.append(f"deny {cidr};")
    for cidr in policy.allow_cidrs:
        lines.append(f"allow {cidr};")
    if policy.allow_cidrs:
        lines.append("deny all;")
    if policy.blocked_user_agents:
        lines.append(
            f'if ($http_user_agent ~* "({_regex_alternatives(policy.blocked_user_agents)})") {{ return 403; }}'
        )
    if policy.blocked_paths:
        alternatives = "|".join(re.escape(p) for p in policy.blocked_paths)
        lines.append(f'if ($uri ~ "^({alternatives})") {{ return 403; }}')
    return "\n".join(lines) + "\n"


class NginxCheckFailed(Exception):
    pass


def nginx_check(http: str, server: str, *, nginx: str | None = None) -> str:
    """Runs ``nginx -t`` on a minimal configuration that includes the rendered snippets; returns its output."""
    binary = nginx or shutil.which("nginx") or "/usr/sbin/nginx"
    with tempfile.TemporaryDirectory(prefix="mpanel-shield-") as tmp:
        root = Path(tmp)
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
            [binary, "-t", "-q", "-p", str(root), "-e", str(root / "error.log"), "-c", str(root / "nginx.conf")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise NginxCheckFailed(result.stderr or result.stdout)
        return result.stderr
