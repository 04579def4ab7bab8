"""Backups end to end on Debian's restic, through the API with jobs run in-process: a real site on
nginx backed up, changed, restored in place byte for byte (owners and modes kept) and into a new
site that nginx serves; a file downloaded from a snapshot; PostgreSQL and MariaDB dumps streamed
into restic and restored after a table is dropped; retention; a damaged repository that the check
and the drill report loudly; a backup killed mid-run that leaves a repository the next run uses."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agent import backups as agent_backups
from apps.backups import crypto, services
from apps.backups.models import BackupPolicy, BackupRepository, Snapshot, SnapshotStatus
from apps.console import selectors as console_selectors
from apps.security.models import SecurityEvent
from apps.websites.models import Website
from tests.backups_support import Flow, backup_node_in, restic_bin, tree  # noqa: F401  (fixtures)
from tests.databases_support import mariadb_server, postgres_server  # noqa: F401
from tests.hosting.test_databases import Flow as DbFlow
from tests.web_support import nginx_node, web_root  # noqa: F401

pytestmark = pytest.mark.django_db


def make_site(flow: Flow, domain: str) -> Website:
    body = flow("post", "website-list", {"primary_domain": domain, "https": False}, expect=201).json()
    site = Website.all_tenants.get(pk=body["id"])
    assert site.status == "active", site.last_error
    return site


def site_dir(root: Path, site: Website) -> Path:
    return root / "web" / "www" / site.site_id


def fill(base: Path, site: Website) -> None:
    public = base / "public"
    (public / "img").mkdir(parents=True, exist_ok=True)
    (public / "index.html").write_text("<h1>version one</h1>")
    (public / "keep.txt").write_text("keep me\n")
    (public / "img" / "logo.bin").write_bytes(os.urandom(200_000))
    secret = public / "config.php"
    secret.write_text("<?php $db = 'x';")
    os.chmod(secret, 0o640)
    os.chown(secret, 0, 33)  # another group than the rest: kept as it was
    (public / "latest").symlink_to("index.html")


def restic_snapshots(repo: BackupRepository) -> list[dict]:
    spec = services.repo_spec(repo)
    env = {"RESTIC_PASSWORD": spec["password"], "PATH": os.environ["PATH"]}
    path = repo_path(repo)
    out = subprocess.run(["restic", "-r", str(path), "snapshots", "--json"], env=env, capture_output=True, check=True)
    return json.loads(out.stdout)


def repo_path(repo: BackupRepository) -> Path:
    from apps.nodes.drivers import local_root

    return local_root() / "backups" / "repos" / repo.restic_name


def test_website_backup_restore_in_place_and_into_a_new_site(
    tenant_a,
    nginx_node,
    restic_bin,
    django_capture_on_commit_callbacks,
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    site = make_site(flow, "shop.example.com")
    base = site_dir(nginx_node.root, site)
    fill(base, site)
    assert nginx_node.wait_until("shop.example.com", 200, contains="version one")[0] == 200

    repo = flow.repository(node)
    assert repo["status"] == "active", repo
    snap = flow.backup(repo, "website", site.pk)
    assert snap["status"] == "done", snap
    assert snap["files"] >= 4 and snap["size_bytes"] > 200_000 and len(snap["restic_id"]) == 64
    before = tree(base)

    # Change, delete, add: then restore in place.
    (base / "public" / "index.html").write_text("<h1>defaced</h1>")
    (base / "public" / "keep.txt").unlink()
    (base / "public" / "junk.exe").write_bytes(b"MZ")
    os.chmod(base / "public" / "config.php", 0o666)
    assert tree(base) != before
    restore = flow.restore(snap)
    assert restore["status"] == "done" and restore["in_place"], restore
    assert tree(base) == before, "the restore is not byte-identical to the snapshot"
    assert nginx_node.wait_until("shop.example.com", 200, contains="version one")[0] == 200

    # The state before the restore was kept as a snapshot of its own.
    listed = flow("get", "backup-snapshot-list", query=f"?resource={site.pk}", expect=200).json()
    reasons = sorted(s["reason"] for s in listed["results"])
    assert reasons == ["manual", "pre-restore"], reasons
    assert restore["pre_snapshot"] in {s["id"] for s in listed["results"]}

    # One file, downloaded from the snapshot (streamed).
    response = flow("get", "backup-snapshot-download", pk=snap["id"], query="?path=public/index.html", expect=200)
    assert b"".join(response.streaming_content) == b"<h1>version one</h1>"
    assert flow("get", "backup-snapshot-download", pk=snap["id"], query="?path=public/img").status_code == 400
    assert flow("get", "backup-snapshot-download", pk=snap["id"], query="?path=../../etc/passwd").status_code == 400

    # Into a new site: nginx serves the restored files there.
    other = make_site(flow, "copy.example.com")
    restore = flow.restore(snap, target=other.pk)
    assert restore["status"] == "done" and not restore["in_place"], restore
    assert nginx_node.wait_until("copy.example.com", 200, contains="version one")[0] == 200
    copied = tree(site_dir(nginx_node.root, other))
    assert {k: v for k, v in copied.items() if v[0] != "dir"} == {k: v for k, v in before.items() if v[0] != "dir"}

    # The repository's sizes are tracked; its password opens it from outside mPanel (restic alone).
    stored = BackupRepository.all_tenants.get(pk=repo["id"])
    assert stored.size_bytes > 0 and stored.raw_bytes > 0
    assert len(restic_snapshots(stored)) == 2


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_database_dump_streamed_and_restored_after_a_drop(
    engine,
    request,
    tenant_a,
    web_root,
    restic_bin,
    django_capture_on_commit_callbacks,
):
    db = request.getfixturevalue("mariadb_server" if engine == "mariadb" else "postgres_server")
    dbflow = DbFlow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a, "db-1")
    server = dbflow.register(db, node_name="db-1")
    shop = dbflow.create("database", server, "shop" + engine[:2])
    name = shop["full_name"]
    conn = db.admin(name)
    statements = ["CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50))",
                  "INSERT INTO items VALUES " + ", ".join(f"({i}, 'item {i}')" for i in range(1, 301)),
                  "CREATE TABLE notes (id INTEGER PRIMARY KEY)", "INSERT INTO notes VALUES (1), (2)"]  # fmt: skip
    try:
        for sql in statements:
            if engine == "postgresql":
                conn.execute(sql)
            else:
                with conn.cursor() as cur:
                    cur.execute(sql)
    finally:
        conn.close()

    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    repo = flow.repository(node)
    node_files_before = {p for p in web_root.rglob("*") if "repos" not in p.parts and "cache" not in p.parts}
    snap = flow.backup(repo, "database", shop["id"])
    assert snap["status"] == "done", snap
    manifest = Snapshot.all_tenants.get(pk=snap["id"]).manifest
    assert manifest["engine"] == engine and sorted(manifest["rows"].values()) == [2, 300], manifest
    # The dump went from the dump tool into restic through a pipe: no file was left on the node.
    node_files_after = {p for p in web_root.rglob("*") if "repos" not in p.parts and "cache" not in p.parts}
    assert not {p for p in node_files_after - node_files_before if p.is_file()}

    def count(table: str):
        conn = db.admin(name)
        try:
            if engine == "postgresql":
                return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            with conn.cursor() as cur:
                cur.execute(f"SELECT count(*) FROM {table}")
                return cur.fetchone()[0]
        finally:
            conn.close()

    conn = db.admin(name)
    try:
        if engine == "postgresql":
            conn.execute("DROP TABLE items")
            conn.execute("DELETE FROM notes")
        else:
            with conn.cursor() as cur:
                cur.execute("DROP TABLE items")
                cur.execute("DELETE FROM notes")
    finally:
        conn.close()
    restore = flow.restore(snap)
    assert restore["status"] == "done", restore
    assert count("items") == 300 and count("notes") == 2

    # The drill restores into a scratch database and compares row counts; scratch is dropped after.
    body = {"name": "db", "repository": repo["id"], "resources": [f"database:{shop['id']}"]}
    policy = flow("post", "backup-policy-list", body, expect=201).json()
    drill = flow("post", "backup-policy-drill", pk=policy["id"], expect=202).json()
    drill = flow("get", "backup-drill-detail", pk=drill["id"], expect=200).json()
    assert drill["status"] == "passed", drill
    assert not [d for d in db.databases() if d.startswith("mpdrill_")]
    assert BackupPolicy.all_tenants.get(pk=policy["id"]).last_drill_status == "passed"


def test_retention_keeps_the_last_three_and_the_repository_shrinks(
    tenant_a,
    nginx_node,
    restic_bin,
    django_capture_on_commit_callbacks,
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    site = make_site(flow, "churn.example.com")
    base = site_dir(nginx_node.root, site)
    (base / "public").mkdir(parents=True, exist_ok=True)
    repo = flow.repository(node)
    policy = flow("post", "backup-policy-list", {"name": "keep3", "repository": repo["id"], "keep_last": 100,
                                                  "resources": [f"website:{site.pk}"]}, expect=201).json()  # fmt: skip
    # Five runs of fresh data (no dedup) are enough to show keep-last=3 forgetting and pruning:
    # the sixth run under keep_last=3 leaves its own snapshot and the two before it.
    for _ in range(5):
        (base / "public" / "data.bin").write_bytes(os.urandom(64_000))
        made = flow("post", "backup-policy-run", pk=policy["id"], expect=202).json()
        assert len(made) == 1
    stored = BackupRepository.all_tenants.get(pk=repo["id"])
    assert len(restic_snapshots(stored)) == 5
    size_before = stored.size_bytes
    flow("patch", "backup-policy-detail", {"keep_last": 3}, pk=policy["id"], expect=200)
    flow("post", "backup-policy-run", pk=policy["id"], expect=202)
    stored.refresh_from_db()
    assert len(restic_snapshots(stored)) == 3
    assert stored.size_bytes < size_before, (stored.size_bytes, size_before)
    done = Snapshot.all_tenants.filter(resource_id=site.pk, status=SnapshotStatus.DONE).count()
    assert done == 3
    assert flow("get", "backup-snapshot-list", query=f"?resource={site.pk}", expect=200).json()["count"] == 3


def test_damage_is_reported_loudly_and_a_killed_backup_leaves_a_usable_repository(
    tenant_a,
    nginx_node,
    restic_bin,
    django_capture_on_commit_callbacks,
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    site = make_site(flow, "fragile.example.com")
    base = site_dir(nginx_node.root, site)
    (base / "public").mkdir(parents=True, exist_ok=True)
    (base / "public" / "big.bin").write_bytes(os.urandom(3_000_000))
    repo = flow.repository(node)
    policy = flow("post", "backup-policy-list", {"name": "p", "repository": repo["id"],
                                                  "resources": [f"website:{site.pk}"]}, expect=201).json()  # fmt: skip
    flow("post", "backup-policy-run", pk=policy["id"], expect=202)
    drill = flow("post", "backup-policy-drill", pk=policy["id"], expect=202).json()
    assert flow("get", "backup-drill-detail", pk=drill["id"]).json()["status"] == "passed"

    # A backup killed mid-run: its lock stays behind, no snapshot is written.
    stored = BackupRepository.all_tenants.get(pk=repo["id"])
    (base / "public" / "more.bin").write_bytes(os.urandom(20_000_000))
    env = {"RESTIC_PASSWORD": crypto.decrypt(stored.password_encrypted), "PATH": os.environ["PATH"],
           "RESTIC_REPOSITORY": str(repo_path(stored))}  # fmt: skip
    proc = subprocess.Popen(["restic", "backup", "--host", f"res-website-{site.pk.hex}", "."], cwd=base, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 20
    while not list((repo_path(stored) / "locks").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list((repo_path(stored) / "locks").iterdir()), "the killed run left no lock to clear"
    assert len(restic_snapshots(stored)) == 1, "a killed run wrote a snapshot"
    flow("post", "backup-policy-run", pk=policy["id"], expect=202)
    assert Snapshot.all_tenants.filter(policy_id=policy["id"], status=SnapshotStatus.DONE).count() == 2
    assert len(restic_snapshots(stored)) == 2

    # A data file damaged by hand: the check and the drill fail and say so (security event too).
    packs = sorted((repo_path(stored) / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    victim = packs[-1]
    os.chmod(victim, 0o644)
    with victim.open("r+b") as fh:
        fh.seek(victim.stat().st_size // 2)
        fh.write(os.urandom(64))
    drill = flow("post", "backup-policy-drill", pk=policy["id"], expect=202).json()
    drill = flow("get", "backup-drill-detail", pk=drill["id"]).json()
    assert drill["status"] == "failed", drill
    stored_policy = BackupPolicy.all_tenants.get(pk=policy["id"])
    assert stored_policy.last_drill_status == "failed" and stored_policy.last_drill_summary
    events = SecurityEvent.objects.filter(tenant=tenant_a.tenant, type=services.EVENT_DRILL_FAILED)
    assert events.exists()
    # On the admin dashboard's to-do list, with a link to the policy.
    todo = console_selectors._backup_failures().todo
    assert [t.title for t in todo] == ["p: restore drill failed"], todo
    assert todo[0].url.endswith(f"/backups/backuppolicy/{policy['id']}/change/")
    result = agent_backups.check(_node(), {"repository": services.repo_spec(stored), "subset": "all"})
    assert not result["ok"] and result["output"]
    flow("post", "backup-repository-check", pk=repo["id"], expect=202)
    stored.refresh_from_db()
    assert stored.last_check_at is not None


def _node():
    from apps.nodes.drivers import LocalDriver

    return LocalDriver().runtime
