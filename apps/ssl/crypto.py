"""Private keys at rest (certificates' and ACME accounts'): ``apps.common.crypto`` with a key of
their own."""

from __future__ import annotations

from apps.common.crypto import Sealer

PRIVATE_KEYS = Sealer(
    "mpanel.ssl.private-key.v1",
    "The certificate's private key cannot be decrypted with this SECRET_KEY: issue or upload it again.",
)
seal, unseal = PRIVATE_KEYS.encrypt, PRIVATE_KEYS.decrypt
