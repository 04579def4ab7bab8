"""The mail hostnames' certificates on the node (agent/mail.py's TLS part): Dovecot serves each
name's own certificate (SNI ``local_name`` blocks, the first pair the default) over IMAPS and IMAP
STARTTLS, verified by Python's ``ssl`` with the certificate's root as the only trust anchor;
Postfix gets its lines (``smtpd_tls_chain_files``) and an SNI map compiled by ``postmap -F``."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from agent.errors import AgentError
from agent.mail import mail_tls
from tests.dns_support import free_port
from tests.mail_support import mail_tmp, tls_dovecot_conf  # noqa: F401  (fixtures)
from tests.ssl_support import make_bundle


def pair(bundle) -> dict:
    return {"certificate": bundle.certificate + bundle.chain, "private_key": bundle.private_key}


def handshake(port: int, name: str, root: str, *, starttls: bool) -> str:
    """The subject's CN of what Dovecot served for ``name`` (``ssl`` verifies chain and name)."""
    context = ssl.create_default_context(cadata=root)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if starttls:
            raw.recv(4096)  # the greeting
            raw.sendall(b"a STARTTLS\r\n")
            assert raw.recv(4096).startswith(b"a OK"), "STARTTLS refused"
        with context.wrap_socket(raw, server_hostname=name) as tls:
            cert = tls.getpeercert()
    finally:
        raw.close()
    return dict(item[0] for item in cert["subject"])["commonName"]


@pytest.fixture
def tls_dovecot(mail_tmp):  # noqa: F811
    for tool in ("dovecot", "doveadm", "postmap"):
        if shutil.which(tool) is None:
            pytest.fail("dovecot-core, dovecot-imapd and postfix are needed: run the tests with `make test`")
    root = mail_tmp / "node"
    primary, other = make_bundle(["mail.example", "imap.mail.example"]), make_bundle(["mx.other.example"])
    result = mail_tls(root, {"certificates": [pair(primary), pair(other)]})
    base = mail_tmp / "dovecot"
    base.mkdir()
    imap, imaps = free_port(), free_port()
    conf = base / "dovecot.conf"
    conf.write_text(tls_dovecot_conf(base, result["dovecot"], imaps=imaps, imap=imap))
    with open(base / "start.log", "wb") as out:
        started = subprocess.run(["dovecot", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, timeout=30)
    assert started.returncode == 0, (base / "start.log").read_text()
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", imaps), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError((base / "dovecot.log").read_text()[-2000:]) from None
            time.sleep(0.1)
    yield root, imap, imaps, primary, other, result
    subprocess.run(["doveadm", "-c", str(conf), "stop"], capture_output=True, timeout=30)


def test_dovecot_serves_each_hostname_its_certificate(tls_dovecot):
    root, imap, imaps, primary, other, result = tls_dovecot
    for starttls, port in ((False, imaps), (True, imap)):
        assert handshake(port, "mail.example", primary.root, starttls=starttls) == "mail.example"
        assert handshake(port, "imap.mail.example", primary.root, starttls=starttls) == "mail.example"
        assert handshake(port, "mx.other.example", other.root, starttls=starttls) == "mx.other.example"
    # A name the node has no certificate for gets the default one (which then does not verify for it).
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(imaps, "unknown.example", primary.root, starttls=False)

    tls_dir = root / "mail" / "tls"
    for key in tls_dir.glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600
    assert primary.private_key not in str(result)
    postfix = (tls_dir / "postfix-tls.cf").read_text()
    assert "smtpd_tls_chain_files = " in postfix and f"tls_server_sni_maps = hash:{tls_dir / 'sni'}" in postfix
    found = subprocess.run(["postmap", "-q", "mx.other.example", f"hash:{tls_dir / 'sni'}"], capture_output=True,
                           text=True)  # fmt: skip
    assert found.returncode == 0 and found.stdout.strip()  # the pair, read into the map by postmap -F

    # One certificate only: no SNI map; the old pair's files go.
    mail_tls(root, {"certificates": [pair(other)]})
    assert not (tls_dir / "sni").exists() and "tls_server_sni_maps" not in (tls_dir / "postfix-tls.cf").read_text()
    assert len(list(tls_dir.glob("*.key"))) == 1


def test_a_bad_pair_is_refused_before_anything_is_written(mail_tmp):  # noqa: F811
    root = mail_tmp / "node"
    good, other = make_bundle(["mail.example"]), make_bundle(["mail.example"])
    mail_tls(root, {"certificates": [pair(good)]})
    before = sorted(p.name for p in (root / "mail" / "tls").iterdir())
    with pytest.raises(AgentError) as refused:
        mail_tls(root, {"certificates": [{"certificate": good.certificate, "private_key": other.private_key}]})
    assert "private_key" in refused.value.message and other.private_key not in refused.value.message
    assert sorted(p.name for p in (root / "mail" / "tls").iterdir()) == before
    assert os.stat(root / "mail" / "tls").st_mode & 0o777 == 0o700
