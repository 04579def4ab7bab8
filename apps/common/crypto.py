"""Secrets the panel must read back (a database server's admin password, a restic repository's
password, a webhook signing secret, a private key), encrypted at rest.

Why encrypted and not hashed: each is used again (a connection, a restic call, a signature, a TLS
handshake). Why not derived, as node agents' secrets are: we do not choose most of them. They are
Fernet tokens (AES-128-CBC + HMAC-SHA256, authenticated) under a key derived with HKDF from
``SECRET_KEY``, so a database dump alone opens nothing. Each kind of secret has its own HKDF label
(``purpose``): a token of one kind never opens as another. Keys from ``SECRET_KEY_FALLBACKS`` still
decrypt, so ``SECRET_KEY`` can be rotated; a token no key opens raises ``UndecryptableSecret`` with
what the person must do about it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class UndecryptableSecret(Exception):
    """No key of this ``SECRET_KEY`` (or its fallbacks) opens the token; the message says what to do."""


@lru_cache(maxsize=64)
def _fernet(secret_key: str, purpose: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


@dataclass(frozen=True)
class Sealer:
    """One kind of secret: ``purpose`` is its HKDF label (never change it: stored tokens would no
    longer open), ``refusal`` what to tell the person when a token cannot be opened."""

    purpose: str
    refusal: str

    def _keys(self) -> MultiFernet:
        secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
        return MultiFernet([_fernet(s, self.purpose) for s in secrets])

    def encrypt(self, value: str) -> str:
        return self._keys().encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._keys().decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise UndecryptableSecret(self.refusal) from exc
