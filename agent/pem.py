"""Certificates and keys as PEM text: the checks a TLS bundle must pass before anything serves it.

One place for both sides: the panel's upload (``apps/ssl/validators.py``, each refusal a 400) and
the node, which checks again what it is asked to install (``agent/web.py``), so nginx is never
handed a key that does not match its certificate or a chain in the wrong order.

``check_bundle`` answers facts about the leaf (names, issuer, serial, dates, SHA-256) and never
returns or logs the key.
"""

from __future__ import annotations

import datetime
import hashlib
import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\s.+?-----END CERTIFICATE-----", re.S)
MAX_PEM = 64 * 1024
MAX_CHAIN = 8


class BadBundle(ValueError):
    """A bundle that must not be served. ``field``: certificate | chain | private_key | names."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.message = message
        self.field = field


def _bytes(value, field: str) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes) or not value.strip():
        raise BadBundle("PEM text is required.", field=field)
    if len(value) > MAX_PEM:
        raise BadBundle(f"At most {MAX_PEM // 1024} KiB of PEM text.", field=field)
    return value


def load_certificates(value, field: str = "certificate") -> list[x509.Certificate]:
    data = _bytes(value, field)
    blocks = PEM_CERT_RE.findall(data)
    if not blocks:
        raise BadBundle("No PEM certificate (-----BEGIN CERTIFICATE-----) found.", field=field)
    if len(blocks) > MAX_CHAIN + 1:
        raise BadBundle(f"At most {MAX_CHAIN} certificates in a chain.", field=field)
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as exc:
        raise BadBundle(f"A certificate cannot be read: {exc}", field=field) from None


def load_key(value, field: str = "private_key"):
    data = _bytes(value, field)
    if b"ENCRYPTED" in data:
        raise BadBundle("Give the key without a passphrase.", field=field)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BadBundle(f"The private key cannot be read: {exc}", field=field) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise BadBundle("Only RSA, ECDSA and Ed25519 keys are served.", field=field)
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise BadBundle("An RSA key must have at least 2048 bits.", field=field)
    return key


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    public = issuer.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                          cert.signature_hash_algorithm)  # fmt: skip
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def names_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return names


def covers(cert_names: list[str], name: str) -> bool:
    """Whether a certificate for ``cert_names`` is valid for ``name`` (one-label wildcards, RFC 6125)."""
    name = name.lower().rstrip(".")
    for pattern in cert_names:
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:] and \
                not name.startswith("*."):  # fmt: skip
            return True
    return False


def ocsp_urls(cert: x509.Certificate) -> list[str]:
    """The OCSP responders the certificate names (Authority Information Access); none: no stapling."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [
        d.access_location.value
        for d in aia
        if d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    ]


def info(cert: x509.Certificate) -> dict:
    return {
        "names": names_of(cert),
        "ocsp": ocsp_urls(cert),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": int(cert.not_valid_before_utc.timestamp()),
        "not_after": int(cert.not_valid_after_utc.timestamp()),
        "sha256": hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
    }


def check_bundle(certificate, chain, private_key, *, names: list[str] | None = None,
                 now: datetime.datetime | None = None) -> dict:  # fmt: skip
    """Checks a leaf (``certificate``, optionally followed by its chain), the rest of the chain
    (``chain``, may be empty) and the key; answers ``info`` of the leaf plus ``chain`` (the
    intermediates in order, PEM). Each chain certificate must have signed the one before it; the
    key must be the leaf's; the leaf must be within its dates; every one of ``names`` covered."""
    certs = load_certificates(certificate, "certificate")
    if chain:
        certs += load_certificates(chain, "chain")
    leaf, intermediates = certs[0], certs[1:]
    if len(intermediates) > MAX_CHAIN:
        raise BadBundle(f"At most {MAX_CHAIN} certificates in a chain.", field="chain")
    key = load_key(private_key)
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise BadBundle("The private key does not belong to this certificate.", field="private_key")
    for child, parent in zip(certs, intermediates, strict=False):
        if not _signed_by(child, parent):
            raise BadBundle(
                f"The chain is broken or out of order: {parent.subject.rfc4514_string()} did not sign "
                f"{child.subject.rfc4514_string()}. Give the leaf first, then each issuer in turn.",
                field="chain",
            )
    now = now or datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= now:
        raise BadBundle(f"The certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}.", field="certificate")
    if leaf.not_valid_before_utc > now + datetime.timedelta(minutes=5):
        raise BadBundle(f"The certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}.",
                        field="certificate")  # fmt: skip
    for cert in intermediates:
        if cert.not_valid_after_utc <= now:
            raise BadBundle(f"{cert.subject.rfc4514_string()} in the chain has expired.", field="chain")
    leaf_names = names_of(leaf)
    missing = [n for n in (names or []) if not covers(leaf_names, n)]
    if missing:
        raise BadBundle(f"The certificate does not cover {', '.join(missing)} (it names {', '.join(leaf_names)}).",
                        field="names")  # fmt: skip
    out = info(leaf)
    out["chain"] = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in intermediates)
    out["certificate"] = leaf.public_bytes(serialization.Encoding.PEM).decode()
    return out
