"""Fixtures for backups: Debian's restic (skipped with the reason when the binary is absent: `make
test` installs it), a node with the backup role (local transport: the node root of the test), a
tree's manifest (path → type, mode, owner, size, SHA-256) to compare restores byte for byte, and
API calls whose jobs run in-process when the request's transaction commits."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.urls import reverse

from apps.backups import services as backup_services
from apps.backups.models import Snapshot, SnapshotStatus
from apps.dns import services as dns_services
from apps.dns.models import Record, Zone
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.nodes.models import Node
from apps.tenancy.roles import Role
from tests.conftest import client_for
from tests.web_support import web_node_in

ROLES = ["web", "db", "dns", "pods", "mail", "backup"]


@pytest.fixture
def restic_bin() -> str:
    found = shutil.which("restic")
    if found is None:
        pytest.skip("restic is not installed: `make test` installs it (scripts/local-node-packages.sh)")
    return found


def backup_node_in(fx, hostname: str = "web-1") -> Node:
    node = web_node_in(fx, hostname, roles=ROLES)
    if "backup" not in node.roles:
        with fx.scope():
            Node.objects.filter(pk=node.pk).update(roles=ROLES)
            node.refresh_from_db()
    return node


def tree(root: Path) -> dict[str, tuple]:
    """Everything a restore must give back exactly: type, mode, owner, size and content."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = ("link", str(path.readlink()), st.st_uid, st.st_gid)
        elif path.is_dir():
            out[rel] = ("dir", st.st_mode, st.st_uid, st.st_gid)
        else:
            out[rel] = (
                "file",
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return out


class Flow:
    """An ADMIN's API calls; the jobs they store run when the request's transaction commits."""

    def __init__(self, capture, fx, role: Role = Role.ADMIN):
        self.capture, self.fx = capture, fx
        self.client = client_for(fx.users[role], fx.tenant)

    def __call__(self, method: str, name: str, data=None, *, expect: int | None = None, query: str = "", **kwargs):
        url = reverse(name, kwargs=kwargs or None) + query
        with self.capture(execute=True):
            response = getattr(self.client, method)(url, data, format="json")
        if expect is not None:
            assert response.status_code == expect, (method, url, response.status_code, response.content[:600])
        return response

    def repository(self, node: Node, name: str = "main") -> dict:
        repo = self("post", "backup-repository-list", {"name": name, "node": str(node.pk)}, expect=201).json()
        return self("get", "backup-repository-detail", pk=repo["id"], expect=200).json()

    def backup(self, repo: dict, kind: str, resource_id) -> dict:
        body = {"repository": repo["id"], "resource_kind": kind, "resource_id": str(resource_id)}
        snap = self("post", "backup-snapshot-list", body, expect=201).json()
        return self("get", "backup-snapshot-detail", pk=snap["id"], expect=200).json()

    def restore(self, snap: dict, target=None) -> dict:
        body = {"target": str(target)} if target else {}
        made = self("post", "backup-snapshot-restore", body, pk=snap["id"], expect=202).json()
        return self("get", "backup-restore-detail", pk=made["id"], expect=200).json()

    def restore_new(self, snap: dict, **names: str) -> dict:
        """Restore into a new website or database (``hostname`` or ``suffix`` optional)."""
        made = self("post", "backup-snapshot-restore", {"target": "new", **names}, pk=snap["id"], expect=202).json()
        return self("get", "backup-restore-detail", pk=made["id"], expect=200).json()


def run_jobs_only(monkeypatch, *prefixes: str) -> None:
    """Jobs whose type starts with one of ``prefixes`` (``"backup."``) run in-process at once; every
    other job (a zone's push to its server) is stored, not run."""
    real = job_services.dispatch
    pattern = "^(" + "|".join(re.escape(prefix) for prefix in prefixes) + ")"

    def dispatch(job_id, countdown=None, **kwargs):
        if Job.all_tenants.filter(pk=job_id, type__regex=pattern).exists():
            return real(job_id, countdown, **kwargs)
        return None

    monkeypatch.setattr(job_services, "dispatch", dispatch)


@pytest.fixture
def zone_root(tmp_path, settings, monkeypatch) -> Path:
    """The node root of the test (where a zone's master file is written for its backup)."""
    root = tmp_path / "node"
    settings.MPANEL_NODE_ROOT = root
    monkeypatch.setenv("MPANEL_NODE_ROOT", str(root))
    return root


def zone_records(zone: Zone) -> list[tuple[str, str, str]]:
    return sorted((r.name, r.type, r.content) for r in Record.all_tenants.filter(zone=zone))


def backed_up_zone(fx, node: Node, name: str, capture) -> tuple[Zone, Snapshot, list[tuple[str, str, str]]]:
    """A zone with an A and an MX record, backed up (the backup jobs must run: ``run_jobs_only``):
    the zone, its done snapshot and its records as they were."""
    with fx.scope():
        zone = dns_services.zone_create(tenant=fx.tenant, name=name, node=node)
        dns_services.record_create(zone=zone, name="www", type="A", content="192.0.2.10")
        dns_services.record_create(zone=zone, name="@", type="MX", content=f"10 mail.{name}.")
        before = zone_records(zone)
    with fx.scope(), capture(execute=True):
        repo = backup_services.repository_create(tenant=fx.tenant, name="zones", node=node)
        snap = backup_services.snapshot_create(tenant=fx.tenant, repository=repo, resource_kind="zone",
                                               resource_id=zone.pk)  # fmt: skip
    snap = Snapshot.all_tenants.get(pk=snap.pk)
    assert snap.status == SnapshotStatus.DONE, snap.last_error
    return zone, snap, before


def runc(root: Path, *args: str) -> subprocess.CompletedProcess:
    """runc on the test node's state folder (``<root>/runc``)."""
    return subprocess.run(["runc", "--root", str(root / "runc"), *args], capture_output=True, text=True, timeout=60)
