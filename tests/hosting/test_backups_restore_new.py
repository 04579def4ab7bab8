"""Restores that keep a site out of service while they run, and restores into a new resource, on
Debian's restic, real nginx and real PostgreSQL, through the API with the jobs run in-process.

The site's state in the middle of a restore is read at a fixed point: the node's ``backup_restore``
call (the step that puts the files back), wrapped to ask nginx what it serves at that moment. No
sleeps: ``wait_until`` only polls nginx's reload."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest

from apps.backups.models import Restore, Snapshot
from apps.databases.models import Database
from apps.mail import jobs as mail_jobs
from apps.nodes.drivers import LocalDriver, NodeError
from apps.websites.models import Website
from tests.backups_support import Flow, backup_node_in, restic_bin, tree  # noqa: F401  (fixtures)
from tests.databases_support import postgres_server  # noqa: F401
from tests.hosting.test_backups_mail import imap_subjects, make_mailbox
from tests.hosting.test_backups_restic import fill, make_site, site_dir
from tests.hosting.test_databases import Flow as DbFlow
from tests.hosting.test_mail import light_crypto  # noqa: F401  (fixture)
from tests.hosting_support import PLAN, account_of, order_paid, plan_in
from tests.mail_support import dovecot, mail_node_root, mail_tmp  # noqa: F401
from tests.web_support import nginx_node, web_root  # noqa: F401

pytestmark = pytest.mark.django_db

SUSPENDED = "This website is suspended"


def during_restore(monkeypatch, nginx, host: str, *, fail: bool = False) -> list[tuple[int, str]]:
    """What nginx serves for ``host`` while the node restores (the answers are collected); with
    ``fail`` the node's restore then fails as a full disk would, after the pre-restore snapshot."""
    seen: list[tuple[int, str]] = []
    real = LocalDriver.backup

    def backup(self, op: str, args: dict):
        if op == "restore":
            answer = nginx.wait_until(host, 503, contains=SUSPENDED)
            seen.append((answer[0], answer[1]))
            if fail:
                raise NodeError("No space left on device", permanent=True)
        return real(self, op, args)

    monkeypatch.setattr(LocalDriver, "backup", backup)
    return seen


def deface(base) -> None:
    (base / "public" / "index.html").write_text("<h1>defaced</h1>")
    (base / "public" / "keep.txt").unlink()


def test_in_place_restore_serves_the_suspended_page_meanwhile_then_the_restored_bytes(
    tenant_a, nginx_node, restic_bin, django_capture_on_commit_callbacks, monkeypatch
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    site = make_site(flow, "hold.example.com")
    base = site_dir(nginx_node.root, site)
    fill(base, site)
    repo = flow.repository(node)
    snap = flow.backup(repo, "website", site.pk)
    before = tree(base)
    deface(base)
    assert nginx_node.wait_until("hold.example.com", 200, contains="defaced")[0] == 200

    seen = during_restore(monkeypatch, nginx_node, "hold.example.com")
    restore = flow.restore(snap)
    assert restore["status"] == "done" and restore["in_place"], restore
    assert len(seen) == 1 and seen[0][0] == 503 and SUSPENDED in seen[0][1], seen
    # Served again, with the snapshot's bytes; the site's own state never changed.
    assert nginx_node.wait_until("hold.example.com", 200, contains="version one")[0] == 200
    assert tree(base) == before
    assert Website.all_tenants.get(pk=site.pk).status == "active"


def test_a_failed_restore_still_serves_the_site_again_and_says_failed(
    tenant_a, nginx_node, restic_bin, django_capture_on_commit_callbacks, monkeypatch
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    site = make_site(flow, "fails.example.com")
    base = site_dir(nginx_node.root, site)
    fill(base, site)
    repo = flow.repository(node)
    snap = flow.backup(repo, "website", site.pk)
    deface(base)

    seen = during_restore(monkeypatch, nginx_node, "fails.example.com", fail=True)
    restore = flow.restore(snap)
    assert restore["status"] == "error" and "No space left" in restore["last_error"], restore
    assert seen and seen[0][0] == 503, seen
    # The site answers again as it was before the restore (nothing was put back).
    assert nginx_node.wait_until("fails.example.com", 200, contains="defaced")[0] == 200
    assert Website.all_tenants.get(pk=site.pk).status == "active"


def test_a_site_suspended_before_the_restore_stays_suspended(
    tenant_a, nginx_node, restic_bin, django_capture_on_commit_callbacks, monkeypatch
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    site = make_site(flow, "unpaid.example.com")
    fill(site_dir(nginx_node.root, site), site)
    repo = flow.repository(node)
    snap = flow.backup(repo, "website", site.pk)
    flow("post", "website-suspend", pk=site.pk, expect=202)
    assert nginx_node.wait_until("unpaid.example.com", 503, contains=SUSPENDED)[0] == 503

    seen = during_restore(monkeypatch, nginx_node, "unpaid.example.com")
    assert flow.restore(snap)["status"] == "done"
    assert seen and seen[0][0] == 503
    assert Website.all_tenants.get(pk=site.pk).status == "suspended"
    assert nginx_node.get("unpaid.example.com")[0] == 503


def test_restore_into_a_new_site_makes_it_and_nginx_serves_the_restored_files(
    tenant_a, nginx_node, restic_bin, django_capture_on_commit_callbacks
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    site = make_site(flow, "orig.example.com")
    base = site_dir(nginx_node.root, site)
    fill(base, site)
    repo = flow.repository(node)
    snap = flow.backup(repo, "website", site.pk)
    before = {k: v for k, v in tree(base).items() if v[0] != "dir"}

    # The default name: restored-<date>.<original>.
    restore = flow.restore_new(snap)
    host = f"restored-{date.today():%Y%m%d}.orig.example.com"
    assert restore["status"] == "done" and not restore["in_place"] and restore["target_label"] == host, restore
    made = Website.all_tenants.get(pk=restore["target_id"])
    assert made.primary_domain == host and made.status == "active" and made.pk != site.pk
    assert nginx_node.wait_until(host, 200, contains="version one")[0] == 200
    assert {k: v for k, v in tree(site_dir(nginx_node.root, made)).items() if v[0] != "dir"} == before
    # The caller's name; the original is untouched and still served.
    restore = flow.restore_new(snap, hostname="copy.orig.example.com")
    assert restore["status"] == "done" and restore["target_label"] == "copy.orig.example.com", restore
    assert nginx_node.wait_until("copy.orig.example.com", 200, contains="version one")[0] == 200
    assert nginx_node.get("orig.example.com")[0] == 200
    # A name already taken is a 400/409 and nothing is made.
    count = Website.all_tenants.count()
    taken = flow("post", "backup-snapshot-restore", {"target": "new", "hostname": "orig.example.com"}, pk=snap["id"])
    assert taken.status_code in (400, 409), taken.content
    assert Website.all_tenants.count() == count
    # A hostname goes only with "new"; a target is an id or "new".
    assert flow("post", "backup-snapshot-restore", {"hostname": "x.example.com"}, pk=snap["id"]).status_code == 400
    assert flow("post", "backup-snapshot-restore", {"target": "newer"}, pk=snap["id"]).status_code == 400


def test_restore_into_a_new_database_makes_it_with_the_rows(
    tenant_a, web_root, postgres_server, restic_bin, django_capture_on_commit_callbacks
):
    db = postgres_server
    dbflow = DbFlow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a, "db-1")
    server = dbflow.register(db, node_name="db-1")
    shop = dbflow.create("database", server, "shopnew")
    conn = db.admin(shop["full_name"])
    try:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50))")
        conn.execute("INSERT INTO items VALUES " + ", ".join(f"({i}, 'item {i}')" for i in range(1, 101)))
    finally:
        conn.close()
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    repo = flow.repository(node)
    snap = flow.backup(repo, "database", shop["id"])
    assert snap["status"] == "done", snap

    restore = flow.restore_new(snap, suffix="_copy")
    assert restore["status"] == "done" and not restore["in_place"], restore
    made = Database.all_tenants.get(pk=restore["target_id"])
    assert made.name == "shopnew_copy" and made.status == "active" and restore["target_label"] == made.full_name
    conn = db.admin(made.full_name)
    try:
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 100
    finally:
        conn.close()
    # The original is as it was.
    assert Database.all_tenants.get(pk=shop["id"]).status == "active"


def test_restore_into_a_new_site_over_the_plan_limit_is_409_and_makes_nothing(
    tenant_a, nginx_node, restic_bin, django_capture_on_commit_callbacks
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    plan = plan_in(tenant_a, config={**PLAN, "websites": 1, "mailboxes": 0, "backups_kept": 0})
    sub = order_paid(tenant_a, django_capture_on_commit_callbacks, plan, domain="one.example")
    site = Website.all_tenants.get(pk=account_of(sub).website_id)
    assert site.status == "active", site.last_error
    repo = flow.repository(node, name="limits")
    snap = flow.backup(repo, "website", site.pk)
    assert snap["status"] == "done", snap

    sites, restores = Website.all_tenants.count(), Restore.all_tenants.count()
    refused = flow("post", "backup-snapshot-restore", {"target": "new"}, pk=snap["id"])
    assert refused.status_code == 409, refused.content
    assert refused.json()["code"] == "plan_limit" and "websites" in refused.json()["detail"], refused.json()
    assert Website.all_tenants.count() == sites and Restore.all_tenants.count() == restores
    assert Snapshot.all_tenants.filter(pk=snap["id"]).exists()


@pytest.mark.parametrize("sync_meanwhile", [False, True], ids=["alone", "with-a-node-sync"])
def test_a_mailbox_restore_holds_its_mail_domain_on_the_node_for_the_time(
    sync_meanwhile, tenant_a, dovecot, mail_node_root, restic_bin, monkeypatch, django_capture_on_commit_callbacks
):
    """Checked in the node's own configuration written before the restore step: the Postfix
    deferral map and Dovecot's deny list name the domain and the mailbox; after, neither does. With a
    ``mail.node.sync`` in the middle (another change's job, rendering the domain's real rows, which
    are not suspended): the hold is the node's own marker, which every sync honours until the restore
    lets it go."""
    monkeypatch.setenv("MPANEL_MAIL_HOME", str(dovecot.maildirs))
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    box = make_mailbox(flow, "held.example", "carol")
    message = b"From: bob@elsewhere.example\r\nTo: carol@held.example\r\nSubject: kept\r\n\r\nbody\r\n"
    assert dovecot.deliver(message, to="carol@held.example", sender="bob@elsewhere.example").returncode == 0
    repo = flow.repository(backup_node_in(tenant_a, "mail-1"))
    snap = flow.backup(repo, "mailbox", box.pk)
    assert snap["status"] == "done", snap
    maps = mail_node_root / "mail"

    seen: list[tuple[str, str]] = []
    real = LocalDriver.backup

    def backup(self, op: str, args: dict):
        if op == "restore":
            if sync_meanwhile:
                mail_jobs.node_sync(SimpleNamespace(payload={"node": str(box.mail_domain.node_id)}, attempts=1,
                                                    max_attempts=5))  # fmt: skip
            seen.append(((maps / "suspended_domains").read_text(), (maps / "suspended_users").read_text()))
        return real(self, op, args)

    monkeypatch.setattr(LocalDriver, "backup", backup)
    restore = flow.restore(snap)
    assert restore["status"] == "done", restore
    assert len(seen) == 1 and "held.example" in seen[0][0] and "carol@held.example" in seen[0][1], seen
    assert "held.example" not in (maps / "suspended_domains").read_text()
    assert "carol@held.example" not in (maps / "suspended_users").read_text()
    assert not list((maps / "held").glob("*/*"))
    assert imap_subjects(dovecot.port, "carol@held.example") == ["kept"]
