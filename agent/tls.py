"""The agent's transport security: TLS with a self-signed certificate that the panel PINS.

Why a pin and not a CA: the node makes its own key on first start and nobody has to run a CA or
hand out certificates. The panel stores the SHA-256 of the certificate's SubjectPublicKeyInfo
(the "SPKI pin", ``sha256:<64 hex>``) and, on every connection, compares it with what the node
presented BEFORE it sends a byte of the request: another key is refused and the request (whose
body carries database passwords, keys…) never leaves. Pinning the key rather than the certificate
lets a node re-issue its certificate with the same key without a new pin. The other direction
(panel → node) is authenticated by the signed requests (``agent.signing``), so mutual TLS would
add a second credential to distribute for nothing.

Files, under ``<tls dir>`` (default ``<node root>/tls``, 0700): ``agent.key`` and ``agent.crt``
(0600), and during a certificate rotation ``next.key`` / ``next.crt`` until activated.

Plain HTTP is allowed on loopback only, on both sides (``parse_address``, ``is_loopback``).
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import ipaddress
import os
import re
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

CURRENT = "agent"
NEXT = "next"
FINGERPRINT_RE = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64}|(?:[0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2})$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                         r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")  # fmt: skip
VALID_DAYS = 3650  # the pin, not the dates, is what the panel trusts; rotate by key, not by expiry
HANDSHAKE_TIMEOUT = 10.0


# --- fingerprints --------------------------------------------------------------------------------


def spki_fingerprint(cert: bytes) -> str:
    """The SHA-256 (64 lowercase hex) of the SubjectPublicKeyInfo of a certificate (DER or PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pem = cert.lstrip().startswith(b"-----")
    parsed = x509.load_pem_x509_certificate(cert) if pem else x509.load_der_x509_certificate(cert)
    spki = parsed.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """``sha256:<hex>``, bare hex or colon-separated hex → 64 lowercase hex; ValueError otherwise."""
    match = FINGERPRINT_RE.match((text or "").strip())
    if not match:
        raise ValueError("Give the SHA-256 fingerprint the agent printed: sha256: and 64 hex digits.")
    return match.group(1).replace(":", "").lower()


def shown(fingerprint: str) -> str:
    return f"sha256:{fingerprint}" if fingerprint else ""


# --- addresses -----------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AgentAddress:
    scheme: str  # https | http (loopback only)
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_address(address: str) -> AgentAddress:
    """The one rule for an agent's address: ``https://host:port`` (or ``host:port``, which means
    https); ``http://`` only to a loopback host. ValueError with the reason otherwise."""
    address = (address or "").strip().rstrip("/")
    if "://" not in address:
        address = f"https://{address}"
    parts = urllib.parse.urlsplit(address)
    if parts.scheme not in ("http", "https"):
        raise ValueError("Use https://host:port of the node's agent.")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError("Use https://host:port of the node's agent.") from exc
    if not host or not port or parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("Use https://host:port of the node's agent.")
    if not HOSTNAME_RE.match(host):
        try:
            ipaddress.ip_address(host)
        except ValueError as exc:
            raise ValueError("Use https://host:port of the node's agent (a host name or an IP address).") from exc
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError("Plain http:// is allowed only on loopback: the agent speaks TLS (https://host:port).")
    return AgentAddress(parts.scheme, host, port)


# --- the node's identity -------------------------------------------------------------------------


def _paths(tls_dir: Path, name: str) -> tuple[Path, Path]:
    return tls_dir / f"{name}.crt", tls_dir / f"{name}.key"


def _write_private(path: Path, data: bytes) -> None:
    """Written 0600 from the first byte (never readable by others, even briefly), then renamed in."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _generate(tls_dir: Path, name: str, common_name: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "mpanel-agent")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt_path, key_path = _paths(tls_dir, name)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(key_path, key_pem)  # the key first: a certificate never names a key not on disk
    _write_private(crt_path, cert.public_bytes(serialization.Encoding.PEM))
    return spki_fingerprint(crt_path.read_bytes())


def _tls_dir(tls_dir: str | Path) -> Path:
    path = Path(tls_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def ensure_identity(tls_dir: str | Path) -> str:
    """This node's key and certificate, made on first use; answers the SPKI fingerprint."""
    path = _tls_dir(tls_dir)
    crt_path, key_path = _paths(path, CURRENT)
    if crt_path.exists() and key_path.exists():
        return spki_fingerprint(crt_path.read_bytes())
    return _generate(path, CURRENT, socket.gethostname())


def fingerprints(tls_dir: str | Path) -> dict[str, str]:
    """``{"current": fp, "next": fp}`` (``next`` only while a rotation is prepared)."""
    path = Path(tls_dir)
    out = {"current": ensure_identity(path)}
    crt_next, _ = _paths(path, NEXT)
    if crt_next.exists():
        out["next"] = spki_fingerprint(crt_next.read_bytes())
    return out


def prepare_rotation(tls_dir: str | Path) -> str:
    """A new key and certificate beside the current ones (not served yet); answers its fingerprint.
    Prepared again, the same ``next`` is kept: the operator may already have given its pin."""
    path = _tls_dir(tls_dir)
    ensure_identity(path)
    crt_next, key_next = _paths(path, NEXT)
    if crt_next.exists() and key_next.exists():
        return spki_fingerprint(crt_next.read_bytes())
    return _generate(path, NEXT, socket.gethostname())


def activate_rotation(tls_dir: str | Path) -> str:
    """Serve the prepared key from now on (a running agent picks it up at its next connection)."""
    path = Path(tls_dir)
    crt_next, key_next = _paths(path, NEXT)
    if not (crt_next.exists() and key_next.exists()):
        raise FileNotFoundError("no prepared certificate: run rotate-cert first")
    crt_path, key_path = _paths(path, CURRENT)
    os.replace(key_next, key_path)
    os.replace(crt_next, crt_path)
    return spki_fingerprint(crt_path.read_bytes())


class ServerIdentity:
    """The agent's server-side SSL context, rebuilt when its files change (a rotation is picked up
    by the next connection, without a restart or a dropped request)."""

    def __init__(self, tls_dir: str | Path):
        self.dir = Path(tls_dir)
        self.fingerprint = ensure_identity(self.dir)
        self._stamp: tuple | None = None
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:
        crt_path, key_path = _paths(self.dir, CURRENT)
        try:
            stamp = tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in (crt_path.stat(), key_path.stat()))
        except OSError:
            stamp = self._stamp  # mid-rename: keep serving the last good pair
        with self._lock:
            if self._context is None or stamp != self._stamp:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(crt_path, key_path)
                self._context, self._stamp = context, stamp
                self.fingerprint = spki_fingerprint(crt_path.read_bytes())
            return self._context


# --- the panel's side: a connection that checks the pin before sending anything -------------------


class PinMismatch(ssl.SSLError):
    def __init__(self, presented: str, pins: tuple[str, ...]):
        self.presented = presented
        self.pins = pins
        expected = " or ".join(shown(p) for p in pins)
        super().__init__(f"the node presented certificate key {shown(presented)}, not the pinned {expected}")


def client_context() -> ssl.SSLContext:
    """No chain or hostname check: a self-signed certificate has neither; the pin replaces both."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that closes before the request when the peer's SPKI is not pinned."""

    def __init__(self, host: str, port: int, *, pins: tuple[str, ...], timeout: float):
        super().__init__(host, port, timeout=timeout, context=client_context())
        self.pins = tuple(pins)
        self.presented: str | None = None

    def connect(self) -> None:
        super().connect()
        der = self.sock.getpeercert(binary_form=True)
        self.presented = spki_fingerprint(der) if der else ""
        if self.presented not in self.pins:
            self.sock.close()
            self.sock = None
            raise PinMismatch(self.presented, self.pins)
