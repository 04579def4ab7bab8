"""Password verifiers in the formats the servers store, computed here so that the clear password
never leaves the request that shows it once (RFC 5802/7677 SCRAM for PostgreSQL; MariaDB's
``mysql_native_password``: ``*`` + upper-hex SHA1(SHA1(password)))."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from .models import Engine

SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


def new_password() -> str:
    """32 characters from the URL-safe alphabet (192 bits); ASCII, so SASLprep leaves it as is."""
    return secrets.token_urlsafe(24)


def scram_sha256(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def mysql_native(password: str) -> str:
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()  # noqa: S324 - the format


def verifier(engine: str, password: str) -> str:
    return scram_sha256(password) if engine == Engine.POSTGRESQL else mysql_native(password)
