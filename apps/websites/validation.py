"""Hostnames, document roots, redirects and error pages as the panel accepts them.

A hostname is normalised (trimmed, lower-cased, trailing dot dropped, Unicode labels turned into
their IDNA A-labels with UTS #46) and must then be a DNS name of at least two labels with a
non-numeric top-level label. ``*.`` wildcards only where ``WEBSITES_ALLOW_WILDCARDS`` is on.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import idna
from django.conf import settings

from apps.common.exceptions import InvalidInput

LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DOCROOT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}(/[A-Za-z0-9._-]{1,64}){0,7}$")
PAGE_RE = re.compile(r"^/[A-Za-z0-9._/-]{1,200}$")
URL_PATH_RE = re.compile(r"^(/[A-Za-z0-9._~%!&'()*+,=:@/-]*)?(\?[A-Za-z0-9._~%!&'()*+,=:@/?-]*)?$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
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
    labels = ascii_name.split(".")
    if len(labels) < 2 or len(ascii_name) > 253 - (2 if wildcard else 0):
        raise InvalidInput(f"Not a valid hostname: {value!r} (it needs a domain and a top-level label).", field=field)
    if not all(LABEL_RE.match(label) for label in labels) or labels[-1].isdigit():
        raise InvalidInput(f"Not a valid hostname: {value!r}.", field=field)
    return ("*." if wildcard else "") + ascii_name


def document_root(value) -> str:
    value = (value or "public").strip().rstrip("/")
    if not DOCROOT_RE.match(value) or any(p in (".", "..") for p in value.split("/")):
        raise InvalidInput("A relative path of letters, digits, '.', '_' and '-' (no '..').", field="document_root")
    return value


def system_user(value, default: str) -> str:
    value = (value or default).strip()
    if not USER_RE.match(value):
        raise InvalidInput(
            "A Unix user name: a lower-case letter or '_', then up to 31 of [a-z0-9_-].", field="system_user"
        )
    return value


def php_version(value) -> str:
    value = (value or "").strip()
    if value and value not in PHP_VERSIONS:
        raise InvalidInput(f"One of {', '.join(PHP_VERSIONS)}, or empty for a static site.", field="php_version")
    return value


def error_pages(value) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput("An object of status code → page path.", field="error_pages")
    out = {}
    for code, page in value.items():
        if not str(code).isdigit() or not 400 <= int(code) <= 599:
            raise InvalidInput(f"{code!r} is not an HTTP error status (400-599).", field="error_pages")
        if not isinstance(page, str) or not PAGE_RE.match(page) or ".." in page.split("/"):
            raise InvalidInput(f"{page!r} is not a path in the site, like /errors/404.html.", field="error_pages")
        out[str(int(code))] = page
    return dict(sorted(out.items()))


def redirects(value) -> list:
    if not isinstance(value, list) or len(value) > 200:
        raise InvalidInput("A list of at most 200 redirects.", field="redirects")
    out, seen = [], set()
    for item in value:
        if not isinstance(item, dict):
            raise InvalidInput("A redirect is {source, target, code}.", field="redirects")
        source, target, code = item.get("source"), item.get("target"), item.get("code", 301)
        if not isinstance(source, str) or not PAGE_RE.match(source) or ".." in source.split("/"):
            raise InvalidInput(f"Source {source!r} must be a path like /old-page.", field="redirects")
        if source in seen:
            raise InvalidInput(f"Source {source!r} is redirected twice.", field="redirects")
        seen.add(source)
        if code not in (301, 302, 307, 308):
            raise InvalidInput("The code must be 301, 302, 307 or 308.", field="redirects")
        out.append({"source": source, "target": redirect_target(target), "code": code})
    return out


def redirect_target(value) -> str:
    if not isinstance(value, str) or len(value) > 2000:
        raise InvalidInput("A redirect target is an http(s) URL.", field="redirects")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.fragment:
        raise InvalidInput(f"{value!r} is not an http(s) URL.", field="redirects")
    host = hostname(parts.hostname, field="redirects", allow_wildcard=False)
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    if not URL_PATH_RE.match(rest):
        raise InvalidInput(f"{value!r} has characters a redirect cannot carry.", field="redirects")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{rest}"
