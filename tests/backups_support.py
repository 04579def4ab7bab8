"""Fixtures for backups: Debian's restic (skipped with the reason when the binary is absent: `make
test` installs it), a node with the backup role (local transport: the node root of the test), a
tree's manifest (path → type, mode, owner, size, SHA-256) to compare restores byte for byte, and
API calls whose jobs run in-process when the request's transaction commits."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from django.urls import reverse

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
