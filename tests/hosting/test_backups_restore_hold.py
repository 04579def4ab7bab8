"""A mailbox restore holds its mail domain suspended on the node for the whole restore, even when a
``mail.node.sync`` (another change's job, rendering the domain's real rows) runs meanwhile: the hold
is the node's own marker, which every sync honours until the restore lets it go. Real Dovecot and
Postfix maps, Debian's restic."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

from types import SimpleNamespace

import pytest

from apps.mail import jobs as mail_jobs
from apps.nodes.drivers import LocalDriver
from tests.backups_support import Flow, backup_node_in, restic_bin  # noqa: F401  (fixtures)
from tests.hosting.test_backups_mail import imap_subjects, make_mailbox
from tests.hosting.test_mail import light_crypto  # noqa: F401  (fixture)
from tests.mail_support import dovecot, mail_node_root, mail_tmp  # noqa: F401

pytestmark = pytest.mark.django_db


def test_a_mail_node_sync_during_a_mailbox_restore_keeps_the_domain_held(
    tenant_a, dovecot, mail_node_root, restic_bin, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setenv("MPANEL_MAIL_HOME", str(dovecot.maildirs))
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    box = make_mailbox(flow, "steady.example", "frank")
    message = b"From: bob@elsewhere.example\r\nTo: frank@steady.example\r\nSubject: kept\r\n\r\nbody\r\n"
    assert dovecot.deliver(message, to="frank@steady.example", sender="bob@elsewhere.example").returncode == 0
    repo = flow.repository(backup_node_in(tenant_a, "mail-1"))
    snap = flow.backup(repo, "mailbox", box.pk)
    assert snap["status"] == "done", snap
    maps = mail_node_root / "mail"

    seen: list[tuple[str, str]] = []
    real = LocalDriver.backup

    def backup(self, op: str, args: dict):
        if op == "restore":
            # Another change's node sync, as its job runs it: the domain's row is not suspended.
            mail_jobs.node_sync(SimpleNamespace(payload={"node": str(box.mail_domain.node_id)}, attempts=1,
                                                max_attempts=5))  # fmt: skip
            seen.append(((maps / "suspended_domains").read_text(), (maps / "suspended_users").read_text()))
        return real(self, op, args)

    monkeypatch.setattr(LocalDriver, "backup", backup)
    restore = flow.restore(snap)
    assert restore["status"] == "done", restore
    assert len(seen) == 1, seen
    assert "steady.example" in seen[0][0] and "frank@steady.example" in seen[0][1], "the sync lifted the hold"
    # Afterwards the hold is gone, the node serves the domain again, the mail is back.
    assert "steady.example" not in (maps / "suspended_domains").read_text()
    assert "frank@steady.example" not in (maps / "suspended_users").read_text()
    assert not list((maps / "held").glob("*/*"))
    assert imap_subjects(dovecot.port, "frank@steady.example") == ["kept"]
