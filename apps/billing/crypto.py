"""Tenants' webhook signing secrets, encrypted at rest (``apps.common.crypto``): a signature is
recomputed with them, so they are encrypted, not hashed."""

from __future__ import annotations

from apps.common.crypto import Sealer, UndecryptableSecret

WEBHOOK_SECRETS = Sealer(
    "mpanel.billing.webhook-secret.v1",
    "This webhook secret cannot be decrypted with this SECRET_KEY: rotate it.",
)
encrypt, decrypt = WEBHOOK_SECRETS.encrypt, WEBHOOK_SECRETS.decrypt

__all__ = ["UndecryptableSecret", "decrypt", "encrypt"]
