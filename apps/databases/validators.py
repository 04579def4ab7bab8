"""Database input rules: names on a server (the tenant's prefix leaves 51 characters of the 63
PostgreSQL allows), a server's address and admin login."""

from __future__ import annotations

import re

from apps.common.exceptions import InvalidInput

from . import crypto

# What the tenant names; the server gets ``<prefix><name>``, at most 63 characters (PostgreSQL's
# identifier limit, within MariaDB's 64 for databases and 80 for users).
PREFIX_LEN = 12  # "t" + 10 hex digits of the tenant id + "_"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,%d}$" % (62 - PREFIX_LEN))  # noqa: UP031
HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,253}[A-Za-z0-9])?$")
ADMIN_USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,80}$")


def clean_name(value: str, field: str = "name") -> str:
    value = str(value or "")
    if not NAME_RE.match(value):
        raise InvalidInput(
            f"Use 1 to {63 - PREFIX_LEN} characters: a lower-case letter, then lower-case letters, digits or _.",
            field=field,
        )
    return value


def clean_server(data: dict) -> dict:
    """The server fields ``data`` holds, checked; the admin password comes back encrypted."""
    out = {}
    if "host" in data:
        host = str(data["host"] or "").strip().lower()
        if not HOST_RE.match(host):
            raise InvalidInput("Not a host name or address.", field="host")
        out["host"] = host
    if "port" in data:
        port = data["port"]
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidInput("A port from 1 to 65535.", field="port")
        out["port"] = port
    if "admin_user" in data:
        if not ADMIN_USER_RE.match(str(data["admin_user"] or "")):
            raise InvalidInput("Letters, digits and _ . @ - (at most 80).", field="admin_user")
        out["admin_user"] = data["admin_user"]
    if data.get("admin_password") is not None:
        password = str(data["admin_password"])
        if not password or any(c in password for c in "\0\r\n"):
            raise InvalidInput("A password without NUL or line breaks.", field="admin_password")
        out["admin_password_encrypted"] = crypto.encrypt(password)
    return out
