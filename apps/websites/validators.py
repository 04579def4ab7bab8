"""Hostnames, document roots, redirects and error pages as the panel accepts them.

A hostname is normalised (trimmed, lower-cased, trailing dot dropped, Unicode labels turned into
their IDNA A-labels with UTS #46) and must then be a DNS name of at least two labels with a
non-numeric top-level label. ``*.`` wildcards only where ``WEBSITES_ALLOW_WILDCARDS`` is on.
Every value is then held to the node's own rule for it (``agent/validate/web.py``), the one the
node applies again before it renders the vhost or the PHP-FPM pool.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import idna
from django.conf import settings

from agent.validate import text as rules_text
from agent.validate import web as rules
from apps.common.exceptions import InvalidInput
from apps.common.rules import check

PHP_VERSIONS = ["7.4", "8.0", "8.1", "8.2", "8.3"]


def hostname(value, *, field: str, allow_wildcard: bool | None = None) -> str:
    if allow_wildcard is None:
        allow_wildcard = getattr(settings, "WEBSITES_ALLOW_WILDCARDS", False)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("A hostname is required.", field=field)
    name = value.strip().lower().rstrip(".")
    wildcard = name.startswith("*.")
    if wildcard:
        if not allow_wildcard:
            raise InvalidInput(f"Wildcard hostnames are not allowed here: {value!r}.", field=field)
        name = name[2:]
    if "*" in name:
        raise InvalidInput(f"'*' is only allowed as a whole first label: {value!r}.", field=field)
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise InvalidInput(f"Not a valid hostname: {value!r} ({exc}).", field=field) from exc
    return check(rules.hostname, ("*." if wildcard else "") + ascii_name, field=field, wildcard=wildcard)


def document_root(value) -> str:
    return check(rules.document_root, (value or "public").strip().rstrip("/"), field="document_root")


def system_user(value, default: str) -> str:
    return check(rules.system_user, (value or default).strip(), field="system_user")


def php_version(value) -> str:
    value = (value or "").strip()
    if value and value not in PHP_VERSIONS:
        raise InvalidInput(f"One of {', '.join(PHP_VERSIONS)}, or empty for a static site.", field="php_version")
    return check(rules.php_version, value, field="php_version") if value else value


def error_pages(value) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput("An object of status code → page path.", field="error_pages")
    out = {}
    for code, page in value.items():
        out[check(rules.error_code, code, field="error_pages")] = check(rules.page, page, field="error_pages")
    return dict(sorted(out.items()))


def redirects(value) -> list:
    if not isinstance(value, list) or len(value) > 200:
        raise InvalidInput("A list of at most 200 redirects.", field="redirects")
    out, seen = [], set()
    for item in value:
        if not isinstance(item, dict):
            raise InvalidInput("A redirect is {source, target, code}.", field="redirects")
        source = item.get("source")
        if not isinstance(source, str) or not rules.PAGE_RE.match(source) or ".." in source.split("/"):
            raise InvalidInput(f"Source {source!r} must be a path like /old-page.", field="redirects")
        if source in seen:
            raise InvalidInput(f"Source {source!r} is redirected twice.", field="redirects")
        seen.add(source)
        code = check(rules.redirect_code, item.get("code", 301), field="redirects")
        out.append({"source": source, "target": redirect_target(item.get("target")), "code": code})
    return out


def redirect_target(value) -> str:
    """An http(s) URL; a Unicode host becomes its A-label. The result is what the node checks."""
    if not isinstance(value, str) or len(value) > 2000:
        raise InvalidInput("A redirect target is an http(s) URL.", field="redirects")
    # urlsplit drops tabs and line breaks and an empty "#": refused here, never silently cleaned.
    check(rules_text, value, field="redirects", what="A redirect target", max_length=2000)
    if "#" in value:
        raise InvalidInput(f"{value!r}: a redirect target cannot carry a fragment ('#').", field="redirects")
    try:
        parts = urlsplit(value.strip())
        port = parts.port  # ValueError when out of range or not a number
    except ValueError as exc:
        raise InvalidInput(f"{value!r} is not an http(s) URL: {exc}.", field="redirects") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.fragment:
        raise InvalidInput(f"{value!r} is not an http(s) URL.", field="redirects")
    host = hostname(parts.hostname, field="redirects", allow_wildcard=False)
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    url = f"{parts.scheme}://{host}{f':{port}' if port is not None else ''}{rest}"
    return check(rules.redirect_target, url, field="redirects")
