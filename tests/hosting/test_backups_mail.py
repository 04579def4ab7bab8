"""A mailbox's Maildir backed up on Debian's restic and restored in place: mail delivered by the
real dovecot-lda, then lost, comes back and is read over IMAP from the real Dovecot."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

import email
import imaplib

import pytest

from apps.backups.models import Snapshot
from apps.mail.models import Mailbox, MailDomain
from tests.backups_support import Flow, backup_node_in, restic_bin  # noqa: F401  (fixtures)
from tests.hosting.test_mail import PASSWORD, boxes_url, light_crypto  # noqa: F401
from tests.mail_support import dovecot, mail_node_root, mail_tmp  # noqa: F401

pytestmark = pytest.mark.django_db


def make_mailbox(flow: Flow, domain: str, local: str) -> Mailbox:
    node = backup_node_in(flow.fx, "mail-1")
    body = flow("post", "mail-domain-list", {"name": domain, "node": str(node.pk)}, expect=201).json()
    mail_domain = MailDomain.all_tenants.get(pk=body["id"])
    assert mail_domain.node_id == node.pk
    url = boxes_url(mail_domain)
    with flow.capture(execute=True):
        response = flow.client.post(url, {"local_part": local, "password": PASSWORD}, format="json")
    assert response.status_code == 201, response.content
    return Mailbox.all_tenants.get(pk=response.json()["id"])


def messages(maildir) -> list:
    """The message files of a Maildir (``new/`` until an IMAP client has seen them, ``cur/`` after)."""
    return sorted(p for p in maildir.rglob("*") if p.is_file() and p.parent.name in ("new", "cur"))


def imap_subjects(port: int, address: str) -> list[str]:
    imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        assert imap.login(address, PASSWORD)[0] == "OK"
        assert imap.select("INBOX")[0] == "OK"
        _, data = imap.search(None, "ALL")
        subjects = []
        for num in data[0].split():
            _, parts = imap.fetch(num, "(RFC822)")
            subjects.append(email.message_from_bytes(parts[0][1])["Subject"])
        return sorted(subjects)
    finally:
        imap.logout()


def test_a_mailboxs_mail_survives_a_restore_read_back_over_imap(
    tenant_a, dovecot, mail_node_root, restic_bin, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setenv("MPANEL_MAIL_HOME", str(dovecot.maildirs))
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    box = make_mailbox(flow, "kept.example", "alice")
    for n in (1, 2):
        message = f"From: bob@elsewhere.example\r\nTo: alice@kept.example\r\nSubject: note {n}\r\n\r\nbody {n}\r\n"
        result = dovecot.deliver(message.encode(), to="alice@kept.example", sender="bob@elsewhere.example")
        assert result.returncode == 0, result.stderr
    assert imap_subjects(dovecot.port, "alice@kept.example") == ["note 1", "note 2"]

    repo = flow.repository(backup_node_in(tenant_a, "mail-1"))
    snap = flow.backup(repo, "mailbox", box.pk)
    assert snap["status"] == "done", snap
    assert snap["resource_label"] == "alice@kept.example" and snap["files"] >= 2

    # The mail is deleted over IMAP (expunged); a restore in place puts it back, the owner kept.
    maildir = dovecot.maildirs / "kept.example" / "alice"
    owner = messages(maildir)[0].stat().st_uid
    imap = imaplib.IMAP4("127.0.0.1", dovecot.port)
    imap.login("alice@kept.example", PASSWORD)
    imap.select("INBOX")
    imap.store("1:*", "+FLAGS", "\\Deleted")
    assert imap.expunge()[0] == "OK"
    imap.logout()
    assert messages(maildir) == []
    assert imap_subjects(dovecot.port, "alice@kept.example") == []
    restore = flow.restore(snap)
    assert restore["status"] == "done" and restore["in_place"], restore
    assert imap_subjects(dovecot.port, "alice@kept.example") == ["note 1", "note 2"]
    assert {p.stat().st_uid for p in messages(maildir)} == {owner}
    assert Snapshot.all_tenants.filter(resource_id=box.pk, reason="pre-restore", status="done").exists()

    # One message, downloaded from the snapshot.
    name = messages(maildir)[0].relative_to(maildir).as_posix()
    response = flow("get", "backup-snapshot-download", pk=snap["id"], query=f"?path={name}", expect=200)
    assert b"Subject: note" in b"".join(response.streaming_content)
