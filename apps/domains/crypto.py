"""The registry account's password and client key, and domains' transfer codes, at rest:
``apps.common.crypto`` with a key of their own."""

from __future__ import annotations

from apps.common.crypto import Sealer, UndecryptableSecret

REGISTRY_SECRETS = Sealer(
    "mpanel.domains.registry-secret.v1",
    "The registry account's secrets cannot be decrypted with this SECRET_KEY: enter them again.",
)
encrypt, decrypt = REGISTRY_SECRETS.encrypt, REGISTRY_SECRETS.decrypt

__all__ = ["UndecryptableSecret", "decrypt", "encrypt"]
