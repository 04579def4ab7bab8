"""A real Dovecot (Debian dovecot-core + dovecot-imapd) on a free loopback port, reading the
passwd-file that the node side renders under the test's node root."""

from __future__ import annotations

import imaplib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dns_support import free_port


@dataclass
class Dovecot:
    port: int
    conf: Path
    outbox: Path  # what sendmail_path was given: <pid>.eml and <pid>.args per message
    maildirs: Path

    def __int__(self) -> int:
        return self.port

    def deliver(self, message: bytes, *, to: str, sender: str) -> subprocess.CompletedProcess:
        """Local delivery through dovecot-lda, as Postfix's pipe would do it."""
        return subprocess.run(
            ["/usr/lib/dovecot/dovecot-lda", "-c", str(self.conf), "-d", to, "-f", sender],
            input=message, capture_output=True, timeout=60,
        )  # fmt: skip

    def replies(self) -> list[str]:
        return sorted(p.read_text() for p in self.outbox.glob("*.eml"))

    def imap_ok(self, address: str, password: str) -> bool:
        imap = imaplib.IMAP4("127.0.0.1", self.port)
        try:
            return imap.login(address, password)[0] == "OK"
        except imaplib.IMAP4.error:
            return False
        finally:
            imap.shutdown()

    def settles(self, address: str, password: str, *, ok: bool, seconds: float = 5.0) -> bool:
        """True once an IMAP login's outcome is ``ok``. Dovecot's auth process stats a passwd-file at
        most once a second, so a login in the same second as a change may still see the old file; a
        node's change is live within that second, which is what this waits for (measured under load)."""
        deadline = time.monotonic() + seconds
        while self.imap_ok(address, password) is not ok:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True


@pytest.fixture
def mail_tmp():
    """A folder the dovecot and nobody users can traverse (pytest's own are mode 700 under root's)."""
    path = Path(tempfile.mkdtemp(prefix="mpanel-mail-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def mail_node_root(mail_tmp, settings, monkeypatch):
    for tool in ("postmap", "dovecot", "doveadm"):
        if shutil.which(tool) is None:
            pytest.fail("postfix, dovecot-core and dovecot-imapd are needed: run the tests with `make test`")
    root = mail_tmp / "node"
    settings.MPANEL_NODE_ROOT = root
    monkeypatch.setenv("MPANEL_NODE_ROOT", str(root))
    return root


@pytest.fixture
def dovecot(mail_node_root, mail_tmp):
    """Dovecot serving IMAP on 127.0.0.1:<port> for the users of <node root>/mail/passwd."""
    base = mail_tmp / "dovecot"
    maildirs = mail_tmp / "maildirs"
    for d in (base, maildirs):
        d.mkdir(parents=True)
    os.chmod(mail_node_root.parent, 0o755)
    os.chmod(maildirs, 0o777)
    passwd = mail_node_root / "mail" / "passwd"
    passwd.parent.mkdir(parents=True, exist_ok=True)
    passwd.touch()
    os.chmod(passwd.parent, 0o755)
    port = free_port()
    # What the node renders (agent/mail.py) is included as is: the passdb and Pigeonhole's sieve.
    from agent.mail import write_dovecot_conf

    rendered = write_dovecot_conf(mail_node_root)
    # Vacation replies go to sendmail_path: a script that keeps each reply as a file.
    outbox = mail_tmp / "outbox"
    outbox.mkdir()
    os.chmod(outbox, 0o777)
    sendmail = base / "sendmail"
    sendmail.write_text(f'#!/bin/sh\necho "$@" > {outbox}/$$.args\ncat > {outbox}/$$.eml\n')
    os.chmod(sendmail, 0o755)
    conf = base / "dovecot.conf"
    conf.write_text(
        f"""
protocols = imap
listen = 127.0.0.1
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:{maildirs}/%d/%n
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
postmaster_address = postmaster@mpanel.invalid
sendmail_path = {sendmail}
!include {rendered}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={maildirs}/%d/%n
}}
"""
    )
    # dovecot forks into the background; its children keep inherited pipes open, so no pipes here.
    with open(base / "start.log", "wb") as out:
        result = subprocess.run(["dovecot", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, timeout=30)
    assert result.returncode == 0, (base / "start.log").read_text()
    deadline = time.monotonic() + 15
    import socket

    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                log = (base / "dovecot.log").read_text() if (base / "dovecot.log").exists() else ""
                raise RuntimeError(f"dovecot did not listen: {log[-2000:]}") from None
            time.sleep(0.1)
    yield Dovecot(port=port, conf=conf, outbox=outbox, maildirs=maildirs)
    subprocess.run(["doveadm", "-c", str(conf), "stop"], capture_output=True, timeout=30)


def static_dovecot_conf(base: Path) -> str:
    """The smallest Dovecot configuration ``doveconf`` accepts, IMAP on 127.0.0.1 with a static
    passdb and userdb (no mailbox behind), run files under ``base``; no newline at the end, as a
    hand-edited file may have none."""
    return f"""protocols = imap
listen = 127.0.0.1
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
passdb {{
  driver = static
  args = password=unused
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={base}/home/%u
}}"""


def tls_dovecot_conf(base: Path, include: str | Path, *, imaps: int, imap: int = 0) -> str:
    """``static_dovecot_conf`` serving the TLS settings of ``include`` (what the node writes) on
    ``imaps`` (implicit TLS) and ``imap`` (STARTTLS; 0 turns it off)."""
    plain = f"    address = 127.0.0.1\n    port = {imap}" if imap else "    port = 0"
    return f"""{static_dovecot_conf(base)}
default_login_user = dovenull
default_internal_user = dovecot
service imap-login {{
  inet_listener imap {{
{plain}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
!include {include}
"""
