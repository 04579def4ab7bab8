"""The mail node's Dovecot is configured by the agent: ``mail_tls`` adds the ``!include_try`` of
mPanel's TLS part to the node's ``dovecot.conf`` (``MPANEL_DOVECOT_CONFIG``) once, checked by
``doveconf`` first; a configuration Dovecot refuses is left as it was."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from agent.errors import AgentError
from agent.mail import ensure_dovecot_include, mail_tls
from tests.mail_support import mail_tmp, static_dovecot_conf  # noqa: F401  (fixtures)
from tests.ssl_support import make_bundle


@pytest.fixture
def dovecot_tools():
    for tool in ("doveconf", "doveadm"):
        if shutil.which(tool) is None:
            pytest.fail("dovecot-core is needed: run the tests with `make test`")


def test_the_include_is_added_once_and_dovecot_reads_the_certificate(dovecot_tools, mail_tmp, monkeypatch):  # noqa: F811
    base = mail_tmp / "dovecot"
    base.mkdir()
    conf = base / "dovecot.conf"
    conf.write_text(static_dovecot_conf(base))  # no newline at the end, as a hand-edited file may be
    conf.chmod(0o640)
    monkeypatch.setenv("MPANEL_DOVECOT_CONFIG", str(conf))
    monkeypatch.delenv("MPANEL_POSTFIX_CONFIG", raising=False)
    root = mail_tmp / "node"
    bundle = make_bundle(["mail.example"])
    pair = {"certificate": bundle.certificate + bundle.chain, "private_key": bundle.private_key}
    first = mail_tls(root, {"certificates": [pair]})
    part = root / "mail" / "tls" / "dovecot-tls.conf"
    assert first["dovecot_include_added"] is True
    assert conf.read_text().count(f"!include_try {part}") == 1
    assert conf.stat().st_mode & 0o777 == 0o640
    shown = subprocess.run(["doveconf", "-c", str(conf), "-n"], capture_output=True, text=True, check=True).stdout
    assert "ssl_cert = </" in shown and "mail.example" not in conf.read_text()
    # Again (a renewal, another push): nothing added.
    again = mail_tls(root, {"certificates": [pair]})
    assert again["dovecot_include_added"] is False
    assert conf.read_text().count("!include") == 1


def test_an_include_written_by_hand_counts_and_a_refused_file_is_left_alone(dovecot_tools, mail_tmp):  # noqa: F811
    base = mail_tmp / "dovecot2"
    base.mkdir()
    part = mail_tmp / "tls" / "dovecot-tls.conf"
    part.parent.mkdir()
    part.write_text("ssl = no\n")
    conf = base / "dovecot.conf"
    conf.write_text(static_dovecot_conf(base) + f"\n!include {part}\n")
    assert ensure_dovecot_include(conf, part) is False
    broken = base / "broken.conf"
    broken.write_text("protocols = imap\nnonsense_setting = 1\n")
    with pytest.raises(AgentError, match="refused"):
        ensure_dovecot_include(broken, part)
    assert broken.read_text() == "protocols = imap\nnonsense_setting = 1\n"
    assert not list(base.glob(".*mpanel-new"))
