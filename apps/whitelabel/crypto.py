"""The private keys of custom portal domains' certificates, at rest: ``apps.common.crypto`` with a
key of their own."""

from __future__ import annotations

from apps.common.crypto import Sealer

CERTIFICATE_KEYS = Sealer(
    "mpanel.whitelabel.certificate-key.v1",
    "The portal domain's certificate key cannot be decrypted with this SECRET_KEY: verify the domain again.",
)
encrypt, decrypt = CERTIFICATE_KEYS.encrypt, CERTIFICATE_KEYS.decrypt
