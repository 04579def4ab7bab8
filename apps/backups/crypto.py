"""Repository passwords, encrypted at rest.

``apps.common.crypto``, with a key of its own. The panel
must read the password back (every restic call needs it, and a tenant may export it), so it is
encrypted, not hashed; a dump of the database alone opens no repository.
"""

from __future__ import annotations

import secrets

from apps.common.crypto import Sealer, UndecryptableSecret

REPOSITORY_PASSWORDS = Sealer(
    "mpanel.backups.repository-password.v1",
    "The repository password cannot be decrypted with this SECRET_KEY: restore the previous key.",
)
encrypt, decrypt = REPOSITORY_PASSWORDS.encrypt, REPOSITORY_PASSWORDS.decrypt

__all__ = ["UndecryptableSecret", "decrypt", "encrypt", "new_password"]


def new_password() -> str:
    """256 bits, URL-safe: restic derives its master key from it with scrypt."""
    return secrets.token_urlsafe(32)


# Each kind of secret has its own HKDF label: a key that opens one kind opens no other.
SFTP_KEYS = Sealer(
    "mpanel.backups.sftp-key.v1",
    "The repository's SSH key cannot be decrypted with this SECRET_KEY: restore the previous key.",
)
S3_SECRETS = Sealer(
    "mpanel.backups.s3-secret.v1",
    "The repository's S3 secret key cannot be decrypted with this SECRET_KEY: restore the previous key.",
)
