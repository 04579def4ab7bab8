"""The admin passwords of database servers, encrypted at rest.

Why not derive them, as apps/nodes/agent_secret.py derives agent secrets: we do not choose these
passwords (the server exists before the panel knows it), so the panel must be able to read them
back. They are Fernet tokens (AES-128-CBC + HMAC-SHA256, authenticated) under a key derived with
HKDF from ``SECRET_KEY``: a database dump alone holds nothing usable. Keys from
``SECRET_KEY_FALLBACKS`` still decrypt, so ``SECRET_KEY`` can be rotated; a token no key opens
is an error that asks for the password again (the server's status says so).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from apps.jobs.errors import register_safe_error

INFO = b"mpanel.databases.admin-password.v1"


@register_safe_error  # "enter it again": meant for the tenant's admin
class UndecryptableSecret(Exception):
    pass


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _keys() -> MultiFernet:
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([_fernet(s) for s in secrets])


def encrypt(value: str) -> str:
    return _keys().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _keys().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise UndecryptableSecret(
            "The admin password cannot be decrypted with this SECRET_KEY: enter it again."
        ) from exc
