"""A real Postfix (Debian postfix) on a free loopback port, with its own config and queue
directories, reading the maps the node side renders under the test's node root: its smtpd answers
RCPT from ``virtual_mailbox_domains``/``virtual_mailbox_maps`` and the suspension access map
(agent/mail.py ``postfix_suspension_settings``)."""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dns_support import free_port

MAPS = ("virtual_domains", "virtual_mailboxes", "virtual_aliases", "suspended_domains", "suspended_transport")
# The services smtpd needs, none chrooted (the queue is a temporary folder).
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


@dataclass
class Postfix:
    port: int
    conf: Path
    log: Path

    def rcpt(self, address: str, sender: str = "someone@sender.example") -> tuple[int, str]:
        """What smtpd answers to RCPT TO:<address> (a new session each time, as a sender's MTA would)."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as smtp:
            smtp.ehlo("sender.example")
            code, _ = smtp.mail(sender)
            assert code == 250
            code, text = smtp.rcpt(address)
            smtp.rset()
            return code, text.decode()


@pytest.fixture
def postfix(mail_node_root, mail_tmp):
    """Postfix's smtpd on 127.0.0.1:<port> for the maps of <node root>/mail (made empty first)."""
    if shutil.which("postfix") is None:
        pytest.fail("postfix is needed: run the tests with `make test` (it installs postfix)")
    from agent.mail import postfix_suspension_settings

    maps = mail_node_root / "mail"
    maps.mkdir(parents=True, exist_ok=True)
    os.chmod(maps, 0o755)
    for name in MAPS:
        if not (maps / f"{name}.db").exists():
            (maps / name).write_text("")
            subprocess.run(["postmap", f"hash:{maps / name}"], check=True, capture_output=True, timeout=30)
    base = mail_tmp / "postfix"
    conf, queue, data = base / "conf", base / "queue", base / "data"
    for d in (conf, queue, data):
        d.mkdir(parents=True)
    shutil.chown(data, "postfix")
    port = free_port()
    (conf / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{port}"))
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": str(queue),
        "data_directory": str(data),
        "myhostname": "mail.mpanel.test",
        "mydestination": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "maillog_file": str(base / "maillog"),
        "maillog_file_prefixes": str(base),
        "virtual_mailbox_domains": f"hash:{maps}/virtual_domains",
        "virtual_mailbox_maps": f"hash:{maps}/virtual_mailboxes",
        "virtual_alias_maps": f"hash:{maps}/virtual_aliases",
        "virtual_transport": "discard",
        **postfix_suspension_settings(mail_node_root),
    }
    (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    started = subprocess.run(["postfix", "-c", str(conf), "start"], capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                log = (base / "maillog").read_text() if (base / "maillog").exists() else ""
                raise RuntimeError(f"postfix did not listen: {log[-2000:]}") from None
            time.sleep(0.1)
    yield Postfix(port=port, conf=conf, log=base / "maillog")
    subprocess.run(["postfix", "-c", str(conf), "stop"], capture_output=True, timeout=60)
