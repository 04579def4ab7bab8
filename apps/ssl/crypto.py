"""Private keys at rest: the panel's Fernet/HKDF helper (``apps/databases/crypto.py``), whose key
derives from ``SECRET_KEY`` (its fallbacks still decrypt, so the key can be rotated)."""

from __future__ import annotations

from apps.databases import crypto as secrets
from apps.jobs.errors import register_safe_error


@register_safe_error  # meant for the tenant's admin: upload or issue again
class UndecryptableKey(Exception):
    pass


def seal(pem: str) -> str:
    return secrets.encrypt(pem)


def unseal(token: str) -> str:
    try:
        return secrets.decrypt(token)
    except secrets.UndecryptableSecret as exc:
        raise UndecryptableKey(
            "The certificate's private key cannot be decrypted with this SECRET_KEY: issue or upload it again."
        ) from exc
