"""Postfix virtual maps and Dovecot's passwd-file: what may be a key or a value there.

A map line is ``key value``: whitespace ends the key, a line starting with ``#`` is a comment and
``,`` separates destinations; the passwd-file is ``:``-separated; a hosted local part also becomes a
maildir and a Sieve script path. So a hosted local part is held to a small set (letters, digits,
``. _ + -``, starting with a letter, digit or ``_``), and a destination — any address, ours or not —
to the same set plus ``' = &`` in its local part and a host name (never ``[ip]``, ``|command`` or
``/file``) after the ``@``.
"""

from __future__ import annotations

import re

from . import Invalid, text
from .names import domain as _domain

LOCAL_RE = re.compile(r"^[a-z0-9_][a-z0-9_+-]*(\.[a-z0-9_+-]+)*$")
REMOTE_LOCAL_RE = re.compile(r"^[a-z0-9_][a-z0-9_+'=&-]*(\.[a-z0-9_+'=&-]+)*$")
HASH_RE = re.compile(r"^\{[A-Z0-9-]+\}[!-9;-~]+$")  # a scheme, then printable ASCII without ":"


def mail_domain(value, field: str = "name") -> str:
    """A domain whose mail is hosted here: a host name of at least two labels."""
    return _domain(value, field=field)


def local_part(value, field: str = "local_part") -> str:
    """The part before the ``@`` of a mailbox or alias hosted here (a map key, a maildir name)."""
    local = text(value, field=field, what="A local part", max_length=64).strip().lower()
    if not local or not LOCAL_RE.match(local):
        raise Invalid(
            f"Not a valid local part: {value!r} (letters, digits and . _ + -, starting with a letter, digit or _; "
            "no dot at either end or twice in a row).",
            field=field,
        )
    return local


def address(value, field: str = "address") -> str:
    """A hosted address: ``local@domain``, both parts by the rules above."""
    raw = text(value, field=field, what="An address", max_length=254).strip().lower()
    local, at, host = raw.rpartition("@")
    if not at:
        raise Invalid(f"{value!r} is not an email address.", field=field)
    return f"{local_part(local, field)}@{mail_domain(host, field)}"


def destination(value, field: str = "destinations") -> str:
    """Where an alias, forwarder or catch-all delivers: any address with a host name after the ``@``."""
    raw = text(value, field=field, what="A destination", max_length=254).strip().lower()
    local, at, host = raw.rpartition("@")
    if not at or len(local) > 64 or not REMOTE_LOCAL_RE.match(local):
        raise Invalid(f"{value!r} is not an email address this server can forward to.", field=field)
    return f"{local}@{mail_domain(host, field)}"


def alias_source(value, field: str = "source") -> str:
    """An alias map key: a hosted address, or ``@domain`` for a domain's catch-all."""
    raw = text(value, field=field, what="An alias", max_length=254).strip().lower()
    if raw.startswith("@"):
        return "@" + mail_domain(raw[1:], field)
    return address(raw, field)


def password_hash(value, field: str = "password_hash") -> str:
    """A Dovecot scheme-prefixed hash, one passwd-file field."""
    if not isinstance(value, str) or len(value) > 255 or not HASH_RE.match(value):
        raise Invalid("Not a Dovecot password hash ({SCHEME}…, no ':' or whitespace).", field=field)
    return value


def quota_mb(value, field: str = "quota_mb") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2_147_483_647:
        raise Invalid("A quota is a whole number of MB from 0 (unlimited) to 2147483647.", field=field)
    return value
