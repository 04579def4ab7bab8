"""A small EPP server for the tests: real TLS on loopback, real RFC 5734 framing, answers replayed
from the RFC examples in this folder (README.md says where each comes from).

The server greets with ``greeting.xml``, then answers each command with the fixture mapped to the
command's name (``login``, ``logout``, ``hello``, ``domain:check``, ``contact:create``, …),
putting the request's clTRID into the answer's ``<clTRID>`` (the RFC examples say ``ABC-12345``;
a client must check that an answer is for its own command). A mapping to ``Raw(bytes)`` sends those
bytes as they are, framing included, then closes: how the tests send a broken stream.

Every request is kept (``server.requests``: (command, xml text)) for the tests to read.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import ssl
import struct
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).parent
EPP = "urn:ietf:params:xml:ns:epp-1.0"
TRID = re.compile(rb"<clTRID>[^<]*</clTRID>")


def fixture(name: str) -> bytes:
    return (HERE / name).read_bytes()


@dataclass
class Raw:
    """Bytes sent exactly as given (no frame header added), then the connection is closed."""

    data: bytes


@dataclass
class Pem:
    cert: str
    key: str


def self_signed(common_name: str, *, ca: bool = True) -> Pem:
    """A certificate for loopback (localhost, 127.0.0.1) signed by its own key: the client is
    told to trust exactly this certificate (the tenant's ``epp_ca_cert``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=ca,
                crl_sign=ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pem(
        cert=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )


def command_of(root: ET.Element) -> str:
    """``login``, ``logout``, ``hello`` or ``<object>:<verb>`` (``domain:create``)."""
    if root.find(f"{{{EPP}}}hello") is not None:
        return "hello"
    cmd = root.find(f"{{{EPP}}}command")
    if cmd is None:
        return "?"
    for child in cmd:
        verb = child.tag.split("}")[1]
        if verb in ("login", "logout"):
            return verb
        if verb in ("clTRID", "extension"):
            continue
        inner = next(iter(child), None)
        if inner is None:
            return verb
        ns = inner.tag.split("}")[0].strip("{")
        return f"{ns.rsplit(':', 1)[-1].split('-')[0]}:{verb}"
    return "?"


@dataclass
class EppTestServer:
    answers: dict[str, str | Raw]
    workdir: Path
    client_ca: str = ""  # PEM: require a client certificate signed by it
    greeting: str | Raw = "greeting.xml"
    pem: Pem = field(default_factory=lambda: self_signed("localhost"))
    requests: list[tuple[str, str]] = field(default_factory=list)
    client_certs: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def start(self) -> EppTestServer:
        cert, key = self.workdir / "server.pem", self.workdir / "server.key"
        cert.write_text(self.pem.cert)
        key.write_text(self.pem.key)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        if self.client_ca:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(cadata=self.client_ca)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)  # accept() wakes up to see stop()
        self.stopped = threading.Event()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(None)
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as conn:
                    conn.settimeout(10)
                    self._session(conn)
            except (OSError, ssl.SSLError) as exc:
                self.errors.append(repr(exc))

    @staticmethod
    def _frame(data: bytes) -> bytes:
        return struct.pack(">I", len(data) + 4) + data

    def _send(self, conn, answer: str | Raw, trid: bytes | None = None) -> bool:
        if isinstance(answer, Raw):
            conn.sendall(answer.data)
            return False
        data = fixture(answer)
        if trid is not None:
            data = TRID.sub(b"<clTRID>" + trid + b"</clTRID>", data)
        conn.sendall(self._frame(data))
        return True

    def _recv(self, conn, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def _session(self, conn) -> None:
        peer = conn.getpeercert()
        if peer:
            self.client_certs.append(peer)
        if not self._send(conn, self.greeting):
            return
        while True:
            header = self._recv(conn, 4)
            if header is None:
                return
            body = self._recv(conn, struct.unpack(">I", header)[0] - 4)
            if body is None:
                return
            root = ET.fromstring(body)
            name = command_of(root)
            self.requests.append((name, body.decode()))
            trid = root.findtext(f"{{{EPP}}}command/{{{EPP}}}clTRID")
            answer = self.answers.get(name)
            if answer is None:
                self.errors.append(f"unexpected command {name}")
                answer = "error-2400.xml"
            if not self._send(conn, answer, trid.encode() if trid else None):
                return
            if name == "logout":
                return

    @property
    def commands(self) -> list[str]:
        return [name for name, _ in self.requests]

    def request(self, name: str) -> ET.Element:
        """The last request of that command, parsed."""
        for command, text in reversed(self.requests):
            if command == name:
                return ET.fromstring(text)
        raise AssertionError(f"no {name} was sent (sent: {self.commands})")


# The session recorded from the RFCs: each command answered by its RFC example.
RFC_SESSION = {
    "login": "login.xml",
    "logout": "logout.xml",
    "hello": "greeting.xml",
    "domain:check": "domain-check.xml",
    "domain:create": "domain-create.xml",
    "domain:renew": "domain-renew.xml",
    "domain:info": "domain-info.xml",
    "domain:update": "domain-update.xml",
    "domain:transfer": "domain-transfer.xml",
    "contact:create": "contact-create.xml",
    "host:create": "host-create.xml",
}
