"""A real ACME CA for the tests: Debian's ``pebble`` (Let's Encrypt's test CA) on loopback ports.

Debian's package ships the binary without pebble's test certificates, so the fixture makes its own:
a throwaway CA and a ``127.0.0.1``/``localhost`` certificate for pebble's HTTPS directory, written
under ``tmp`` with the config. The panel's ACME client trusts that CA through
``MPANEL_ACME_CA_BUNDLE``. HTTP-01 validation: pebble's ``httpPort`` is the test nginx's HTTP port,
and pebble resolves the names through ``-dnsserver``, our PowerDNS fixture (the tests publish the
names' A records there through the DNS app). DNS-01 reads the TXT records from the same server.

``PEBBLE_VA_NOSLEEP=1`` (no artificial validation delay), ``PEBBLE_WFE_NONCEREJECT=0`` (pebble
otherwise rejects 5% of good nonces on purpose; the acme library retries once, which is not what
these tests are about). Nothing here makes validation always succeed.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tls_files(directory: Path) -> Path:
    """A CA and pebble's server certificate signed by it; answers the CA's path."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mPanel test pebble listener CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "ca.pem"


@dataclass
class Pebble:
    directory: str  # the ACME directory URL
    ca_bundle: Path  # trust for pebble's own HTTPS listener
    management: str
    dir: Path
    http_port: int
    dns_server: str
    proc: subprocess.Popen | None = None

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def root_pem(self) -> str:
        """The root the issued chains lead to (it changes every time pebble starts)."""
        with urllib.request.urlopen(f"{self.management}/roots/0", context=self._context(), timeout=10) as answer:
            return answer.read().decode()

    def start(self) -> None:
        binary = shutil.which("pebble") or "/usr/bin/pebble"
        log = open(self.dir / "pebble.log", "ab")  # noqa: SIM115 - pebble writes to it until stopped
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PATH": "/usr/bin:/bin"}
        self.proc = subprocess.Popen(
            [binary, "-config", str(self.dir / "pebble-config.json"), "-dnsserver", self.dns_server],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(self.directory, context=self._context(), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pebble failed: {(self.dir / 'pebble.log').read_text()[-2000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def start_pebble(directory: Path, settings, *, http_port: int, dns_server: str) -> Pebble:
    """Pebble on loopback under ``directory``, validating HTTP-01 on ``http_port`` and resolving names
    (DNS-01's TXT records included) through ``dns_server`` ("127.0.0.1:<port>"); the panel's ACME
    settings point at it. The caller stops it."""
    if shutil.which("pebble") is None and not Path("/usr/bin/pebble").exists():
        pytest.fail("pebble is needed: run the tests with `make test` (it installs Debian's pebble)")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _tls_files(directory)
    port, management = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(directory / "cert.pem"),
            "privateKey": str(directory / "key.pem"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (directory / "pebble-config.json").write_text(json.dumps(config))
    server = Pebble(
        directory=f"https://127.0.0.1:{port}/dir",
        ca_bundle=ca,
        management=f"https://127.0.0.1:{management}",
        dir=directory,
        http_port=http_port,
        dns_server=dns_server,
    )
    server.start()
    settings.MPANEL_ACME_DIRECTORY = server.directory
    settings.MPANEL_ACME_CA_BUNDLE = str(ca)
    settings.MPANEL_ACME_VALIDATION_SECONDS = 30
    settings.MPANEL_ACME_DNS_WAIT_SECONDS = 20
    return server


@pytest.fixture
def pebble(tmp_path, settings, powerdns, nginx_node):
    """Pebble on loopback, validating HTTP-01 against the test nginx and resolving through PowerDNS."""
    server = start_pebble(tmp_path / "pebble", settings, http_port=nginx_node.http_port,
                          dns_server=f"127.0.0.1:{powerdns.dns_port}")  # fmt: skip
    yield server
    server.stop()
    print(f"--- pebble's log ---\n{(server.dir / 'pebble.log').read_text()[-4000:]}")  # shown when a test fails


def served_certificate(nginx, host: str, root_pem: str) -> x509.Certificate:
    """The certificate nginx serves for ``host``, verified (chain and name) with ``root_pem`` as the
    only trust anchor: ``ssl`` raises if either does not hold."""
    context = ssl.create_default_context(cadata=root_pem)
    with (
        socket.create_connection(("127.0.0.1", nginx.https_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def wait_served(nginx, host: str, root_pem: str, serial: int | None = None, timeout: float = 10) -> x509.Certificate:
    """A reload hands over to new workers: wait until one serves a verifying certificate (of ``serial``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cert = served_certificate(nginx, host, root_pem)
            if serial is None or cert.serial_number == serial:
                return cert
        except OSError:  # not listening yet (a reload opens the port), or not verifying yet
            if time.monotonic() > deadline:
                raise
            cert = None
        if cert is not None and time.monotonic() > deadline:
            return cert
        time.sleep(0.1)


# --- certificates made here, for the upload path --------------------------------------------------


@dataclass
class Bundle:
    certificate: str  # the leaf
    chain: str  # the intermediate
    private_key: str
    root: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_bundle(names: list[str], *, days: int = 90, not_before_days: int = -1, ocsp: str | None = None) -> Bundle:
    """A root, an intermediate it signed and a leaf for ``names`` the intermediate signed (naming its
    issuer's key, as ACME CAs do; and the OCSP responder ``ocsp`` when given)."""
    now = datetime.datetime.now(datetime.UTC)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    root_key, mid_key, leaf_key = keys

    def build(subject, issuer, public, signer, ca: bool, start, end, san=None, extra=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False)
        for extension in extra:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(signer, hashes.SHA256())

    start = now + datetime.timedelta(days=not_before_days)
    root = build(_name("Test Root"), _name("Test Root"), root_key.public_key(), root_key, True,
                 now - datetime.timedelta(days=10), now + datetime.timedelta(days=3650))  # fmt: skip
    mid = build(_name("Test Intermediate"), _name("Test Root"), mid_key.public_key(), root_key, True,
                now - datetime.timedelta(days=10), now + datetime.timedelta(days=1000))  # fmt: skip
    extra = [x509.AuthorityKeyIdentifier.from_issuer_public_key(mid_key.public_key())]
    if ocsp:
        extra.append(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp))]))  # fmt: skip
    leaf = build(_name(names[0].lstrip("*.")), _name("Test Intermediate"), leaf_key.public_key(), mid_key, False,
                 start, start + datetime.timedelta(days=days), san=names, extra=extra)  # fmt: skip

    def pem_of(cert):
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    key = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return Bundle(certificate=pem_of(leaf), chain=pem_of(mid), private_key=key, root=pem_of(root))


def key_marker(key_pem: str) -> str:
    """A line of the key's base64 body: present in any text that holds the key."""
    return [line for line in key_pem.splitlines() if line and not line.startswith("-----")][1]
