"""The admin passwords of database servers, encrypted at rest (``apps.common.crypto``).

Why not derive them, as apps/nodes/agent_secret.py derives agent secrets: we do not choose these
passwords (the server exists before the panel knows it), so the panel must read them back.
"""

from __future__ import annotations

from apps.common.crypto import Sealer, UndecryptableSecret

ADMIN_PASSWORDS = Sealer(
    "mpanel.databases.admin-password.v1",
    "The admin password cannot be decrypted with this SECRET_KEY: enter it again.",
)
encrypt, decrypt = ADMIN_PASSWORDS.encrypt, ADMIN_PASSWORDS.decrypt

__all__ = ["UndecryptableSecret", "decrypt", "encrypt"]
