"""The private keys of custom domains' certificates, encrypted at rest: Fernet under a key derived
with HKDF from ``SECRET_KEY`` (``SECRET_KEY_FALLBACKS`` still decrypt, so the key can rotate). A
database dump alone holds no usable key."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

INFO = b"mpanel.whitelabel.certificate-key.v1"


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _keys() -> MultiFernet:
    return MultiFernet([_fernet(s) for s in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]])


def encrypt(value: str) -> str:
    return _keys().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    return _keys().decrypt(token.encode()).decode()
