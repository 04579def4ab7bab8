"""A restore's progress as a percentage, on Debian's restic and a real site on nginx, through the API
with the jobs run in-process. restic 0.14 (Debian 12's) prints no status line for ``restore`` (not even
with ``--json``): the node then measures the bytes restored so far in the staging tree against the
snapshot's restore size, and writes it at most every ``PROGRESS_EVERY`` seconds; the panel asks the
node while its restore call runs and keeps the answer for the API and the admin."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

import os
import uuid

import pytest
from django.core.cache import cache

from agent import backups as agent_backups
from apps.backups import services
from apps.backups.models import Restore
from apps.nodes.drivers import LocalDriver
from tests.backups_support import Flow, backup_node_in, restic_bin  # noqa: F401  (fixtures)
from tests.databases_support import postgres_server  # noqa: F401
from tests.hosting.test_backups_restic import make_site, site_dir
from tests.hosting.test_databases import Flow as DbFlow
from tests.web_support import nginx_node, web_root  # noqa: F401

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


def test_a_website_restore_reports_its_percentage_while_it_runs_and_100_when_done(
    tenant_a, nginx_node, restic_bin, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.MPANEL_BACKUP_PROGRESS_SECONDS = 0.05
    monkeypatch.setattr(agent_backups, "PROGRESS_EVERY", 0.05)
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    site = make_site(flow, "big.example.com")
    public = site_dir(nginx_node.root, site) / "public"
    public.mkdir(parents=True, exist_ok=True)
    for i in range(96):  # 96 MiB that restic cannot compress or deduplicate: a restore of some seconds
        (public / f"blob-{i:03}.bin").write_bytes(os.urandom(MB))
    total = sum(p.stat().st_size for p in site_dir(nginx_node.root, site).rglob("*") if p.is_file())
    repo = flow.repository(node)
    snap = flow.backup(repo, "website", site.pk)
    assert snap["status"] == "done", snap

    # What the node answered each time the panel asked, and what the panel had kept at that moment.
    answers: list[dict] = []
    kept: list[dict | None] = []
    real = LocalDriver.backup

    def backup(self, op: str, args: dict):
        found = real(self, op, args)
        if op == "restore_progress":
            answers.append(found)
            kept.append(cache.get(services.progress_key(uuid.UUID(args["token"]))))
        return found

    monkeypatch.setattr(LocalDriver, "backup", backup)
    restore = flow.restore(snap)
    assert restore["status"] == "done", restore
    assert restore["progress"] == {"percent": 100.0, "bytes_done": None, "bytes_total": None}, restore

    reported = [a for a in answers if a]
    assert reported, f"the node reported no progress ({len(answers)} looks)"
    assert all(a["bytes_total"] == total for a in reported), (reported[:3], total)
    percents = [a["percent"] for a in reported]
    assert percents == sorted(percents), "the percentage went backwards"
    assert any(0 < p < 100 for p in percents), percents
    # The panel kept what the node said (the API reads it while the restore runs).
    assert any(k and 0 < k["percent"] < 100 for k in kept), kept
    assert cache.get(services.progress_key(uuid.UUID(restore["id"]))) is None, "a finished restore's live entry stays"
    assert Restore.all_tenants.get(pk=restore["id"]).progress == 100
    # The node's progress file is gone with the restore.
    assert not list((nginx_node.root / "backups" / "progress").glob("*.json"))


def watched_answers(monkeypatch) -> list[dict]:
    """Every answer of the node when the panel asks how far a restore is."""
    answers: list[dict] = []
    real = LocalDriver.backup

    def backup(self, op: str, args: dict):
        found = real(self, op, args)
        if op == "restore_progress":
            answers.append(found)
        return found

    monkeypatch.setattr(LocalDriver, "backup", backup)
    return answers


def test_a_database_restore_reports_its_percentage_of_the_dump_while_it_loads(
    tenant_a, postgres_server, web_root, restic_bin, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.MPANEL_BACKUP_PROGRESS_SECONDS = 0.02
    monkeypatch.setattr(agent_backups, "PROGRESS_EVERY", 0.02)
    monkeypatch.setattr(agent_backups, "LOAD_CHUNK", 256 * 1024)
    dbflow = DbFlow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a, "db-1")
    shop = dbflow.create("database", dbflow.register(postgres_server, node_name="db-1"), "bigshop")
    conn = postgres_server.admin(shop["full_name"])
    try:  # 48 MiB that neither TOAST nor the dump can compress: a load of some tenths of a second at least
        conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BYTEA)")
        conn.execute("ALTER TABLE blobs ALTER COLUMN body SET STORAGE EXTERNAL")
        for i in range(48):
            conn.execute("INSERT INTO blobs VALUES (%s, %s)", (i, os.urandom(MB)))
    finally:
        conn.close()
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    snap = flow.backup(flow.repository(node), "database", shop["id"])
    assert snap["status"] == "done", snap
    conn = postgres_server.admin(shop["full_name"])
    try:
        conn.execute("DROP TABLE blobs")
    finally:
        conn.close()

    answers = watched_answers(monkeypatch)
    restore = flow.restore(snap)
    assert restore["status"] == "done", restore
    assert restore["progress"] == {"percent": 100.0, "bytes_done": None, "bytes_total": None}, restore
    conn = postgres_server.admin(shop["full_name"])
    try:
        assert conn.execute("SELECT count(*), sum(length(body)) FROM blobs").fetchone() == (48, 48 * MB)
    finally:
        conn.close()
    reported = [a for a in answers if a]
    assert reported, f"the node reported no progress ({len(answers)} looks)"
    total = reported[0]["bytes_total"]
    assert total > 48 * MB and all(a["bytes_total"] == total for a in reported), reported[:3]
    percents = [a["percent"] for a in reported]
    assert percents == sorted(percents), "the percentage went backwards"
    assert any(0 < p < 100 for p in percents), percents
    assert not list((web_root / "backups" / "progress").glob("*.json"))


def test_a_running_restore_reads_the_live_percentage_and_a_pending_one_none(tenant_a):
    restore = Restore(pk=uuid.uuid4(), status="running")
    assert services.restore_progress(restore) == {"percent": 0.0, "bytes_done": None, "bytes_total": None}
    cache.set(services.progress_key(restore.pk), {"percent": 42.5, "bytes_done": 425, "bytes_total": 1000})
    assert services.restore_progress(restore)["percent"] == 42.5
    assert services.restore_progress(Restore(pk=uuid.uuid4(), status="pending")) is None
