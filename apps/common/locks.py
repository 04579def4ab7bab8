"""Advisory locks for checks that no unique index can hold (a name's whole tree, a Unix user on one
machine shared by several tenants)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db import connection


def advisory_xact_lock(keys: Iterable[str]) -> None:
    """Serialise every transaction that checks and takes one of ``keys``: a PostgreSQL
    transaction-level advisory lock on a 64-bit hash of each, taken in sorted order (two takers of
    the same pair never deadlock) and released at commit or rollback. The second of two concurrent
    takers waits here, then sees the first one's rows."""
    if connection.vendor != "postgresql":
        return  # SQLite (the embedded default) serialises writers by itself
    if not connection.in_atomic_block:
        raise RuntimeError("an advisory lock must be taken inside the transaction that writes what it guards")
    with connection.cursor() as cursor:
        for key in sorted(set(keys)):
            digest = hashlib.sha256(f"mpanel:{key}".encode()).digest()
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest[:8], "big", signed=True)])
