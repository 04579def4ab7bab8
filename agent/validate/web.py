"""Values of an nginx server block and of a PHP-FPM pool.

nginx reads a directive's arguments as whitespace-separated words ended by ``;``, with ``{``/``}``
opening and closing blocks, ``#`` starting a comment and ``$`` naming a variable; a PHP-FPM pool
file is an INI file. Every value that reaches either is therefore held to a character set that has
none of those: host names (``names.domain``), relative paths, and URLs of a small character set.
"""

from __future__ import annotations

import re

from . import Invalid, text
from .names import domain as _domain

SITE_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$")
DOCROOT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}(/[A-Za-z0-9._-]{1,64}){0,7}$")
PAGE_RE = re.compile(r"^/[A-Za-z0-9._/-]{1,200}$")
URL_RE = re.compile(
    r"^(?P<scheme>https?)://(?P<host>[a-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<rest>(/[A-Za-z0-9._~%!&'()*+,=:@/-]*)?(\?[A-Za-z0-9._~%!&'()*+,=:@/?-]*)?)$"
)
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PHP_RE = re.compile(r"^[5-8]\.[0-9]$")
REDIRECT_CODES = (301, 302, 307, 308)
# Accounts of the system and of the daemons a node runs (Debian's names). A site's code and files
# must never run as or belong to one of them, whether or not it exists on a given node yet.
RESERVED_USERS = frozenset(
    {
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        "_apt",
        "systemd-network",
        "systemd-resolve",
        "systemd-timesync",
        "systemd-coredump",
        "messagebus",
        "sshd",
        "postfix",
        "dovecot",
        "dovenull",
        "vmail",
        "mysql",
        "postgres",
        "redis",
        "nginx",
        "bind",
        "pdns",
        "opendkim",
        "opendmarc",
        "clamav",
        "debian-spamd",
        "ftp",
        "sftp",
        "admin",
        "operator",
        "halt",
        "shutdown",
        "adm",
        "tss",
        "uuidd",
        "polkitd",
        "avahi",
        "colord",
        "dnsmasq",
        "ntp",
        "chrony",
        "statd",
        "rpc",
        "tcpdump",
        "_chrony",
        "mpanel",
    }
)


def site_id(value, field: str = "id") -> str:
    if not isinstance(value, str) or not SITE_ID_RE.match(value):
        raise Invalid(f"Not a site id: {value!r}.", field=field)
    return value


def hostname(value, field: str = "domains", *, wildcard: bool = True) -> str:
    """A server_name: an ASCII host name, ``*.`` first where ``wildcard``."""
    return _domain(value, field=field, wildcard=wildcard)


def document_root(value, field: str = "document_root") -> str:
    value = text(value, field=field, what="A document root", max_length=200)
    if not DOCROOT_RE.match(value) or any(p in (".", "..") for p in value.split("/")):
        raise Invalid("A relative path of letters, digits, '.', '_' and '-' (no '..').", field=field)
    return value


def page(value, field: str = "error_pages") -> str:
    """A path inside the site (an error page, a redirect's source)."""
    if not isinstance(value, str) or not PAGE_RE.match(value) or ".." in value.split("/"):
        raise Invalid(f"{value!r} is not a path in the site, like /errors/404.html.", field=field)
    return value


def redirect_target(value, field: str = "redirects") -> str:
    """An absolute http(s) URL: a host name, a port from 1 to 65535, a path and query of URL characters."""
    match = URL_RE.match(value) if isinstance(value, str) and len(value) <= 2000 else None
    if not match:
        raise Invalid(f"{value!r} is not an http(s) URL a redirect can carry.", field=field)
    hostname(match["host"], field, wildcard=False)
    if match["port"] is not None and not 1 <= int(match["port"]) <= 65535:
        raise Invalid(f"{value!r} has a port out of range (1-65535).", field=field)
    return value


def redirect_code(value, field: str = "redirects") -> int:
    if isinstance(value, bool) or value not in REDIRECT_CODES:
        raise Invalid("The code must be 301, 302, 307 or 308.", field=field)
    return int(value)


def error_code(value, field: str = "error_pages") -> str:
    code = str(value)
    if not code.isascii() or not code.isdigit() or not 400 <= int(code) <= 599:
        raise Invalid(f"{value!r} is not an HTTP error status (400-599).", field=field)
    return str(int(code))


def system_user(value, field: str = "system_user") -> str:
    """A site's Unix user: a portable user name that is none of the system's own accounts."""
    if not isinstance(value, str) or not USER_RE.match(value):
        raise Invalid("A Unix user name: a lower-case letter or '_', then up to 31 of [a-z0-9_-].", field=field)
    if value in RESERVED_USERS or value.startswith("systemd-"):
        raise Invalid(f"{value!r} is a system account; a site runs as a user of its own.", field=field)
    return value


def php_version(value, field: str = "php_version") -> str:
    if not isinstance(value, str) or not PHP_RE.match(value):
        raise Invalid(f"Not a PHP version: {value!r} (like 8.2).", field=field)
    return value
