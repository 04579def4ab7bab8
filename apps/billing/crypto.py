"""Tenants' webhook signing secrets, encrypted at rest.

The construction of ``apps/databases/crypto.py`` (Fernet, AES-128-CBC + HMAC-SHA256, under a key
derived with HKDF from ``SECRET_KEY``; ``SECRET_KEY_FALLBACKS`` still decrypt, so ``SECRET_KEY`` can be
rotated), with billing's own HKDF label: a key for one purpose opens nothing of another's. We must
read these secrets back (a signature is recomputed with them), so they are encrypted, not hashed.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

INFO = b"mpanel.billing.webhook-secret.v1"


class UndecryptableSecret(Exception):
    """No key of this SECRET_KEY (or its fallbacks) opens the secret: the tenant rotates it."""


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
        raise UndecryptableSecret("This webhook secret cannot be decrypted with this SECRET_KEY: rotate it.") from exc
