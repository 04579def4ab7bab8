"""Repository passwords, encrypted at rest.

The same construction as the database servers' admin passwords (apps/databases/crypto.py: Fernet
under a key derived with HKDF from ``SECRET_KEY``, ``SECRET_KEY_FALLBACKS`` still decrypting), with
a key of its own (another HKDF ``info``): a token of one kind never opens as the other. The panel
must read the password back (every restic call needs it, and a tenant may export it), so it is
encrypted, not hashed; a dump of the database alone opens no repository.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from apps.jobs.errors import register_safe_error

INFO = b"mpanel.backups.repository-password.v1"


@register_safe_error  # meant for the tenant's admin: the panel's key changed
class UndecryptableSecret(Exception):
    pass


def _key(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _keys() -> MultiFernet:
    return MultiFernet([_key(s) for s in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]])


def new_password() -> str:
    """256 bits, URL-safe: restic derives its master key from it with scrypt."""
    return secrets.token_urlsafe(32)


def encrypt(value: str) -> str:
    return _keys().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _keys().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise UndecryptableSecret(
            "The repository password cannot be decrypted with this SECRET_KEY: restore the previous key."
        ) from exc
