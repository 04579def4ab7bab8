"""Backup repositories over SFTP: a real OpenSSH server on loopback (tests/sshd_support.py), Debian's
restic on its ``sftp:`` backend, through the API with jobs run in-process. The panel makes the SSH key,
shows its public half, keeps the private half sealed; the repository is made once the key is
authorized and "test connection" passes; a website is backed up, listed, restored in place byte for
byte, and the repository checked, all through SFTP. Also: a wrong host key is refused in plain words,
and no secret is in an answer, audit record or job payload, nor left on the node."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

import json
import os
import subprocess

import pytest

from apps.audit.models import AuditEvent
from apps.backups import crypto
from apps.backups.models import BackupRepository
from apps.jobs.models import Job
from apps.nodes.drivers import local_root
from tests.backups_support import Flow, backup_node_in, restic_bin, tree  # noqa: F401  (fixtures)
from tests.conftest import PASSWORD
from tests.hosting.test_backups_restic import fill, make_site, site_dir
from tests.sshd_support import Sshd, sshd  # noqa: F401
from tests.web_support import nginx_node, web_root  # noqa: F401

pytestmark = pytest.mark.django_db


def sftp_repository(flow: Flow, node, server: Sshd, folder, *, host_key: str | None = None, name: str = "offsite"):
    body = {"name": name, "node": str(node.pk), "backend": "sftp", "sftp_host": "127.0.0.1",
            "sftp_port": server.port, "sftp_user": server.user, "sftp_path": str(folder),
            "sftp_host_key": host_key or server.host_key}  # fmt: skip
    return flow("post", "backup-repository-list", body, expect=201)


def test_a_website_backed_up_listed_and_restored_through_an_sftp_repository(
    tenant_a, nginx_node, restic_bin, sshd, tmp_path, django_capture_on_commit_callbacks
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    site = make_site(flow, "sftp.example.com")
    base = site_dir(nginx_node.root, site)
    fill(base, site)
    remote = tmp_path / "remote-repos"

    # The panel made the key: its public half is shown, the private half never.
    created = sftp_repository(flow, node, sshd, remote)
    repo = created.json()
    assert repo["backend"] == "sftp" and repo["sftp_public_key"].startswith("ssh-ed25519 ")
    assert "sftp_private_key" not in repo and "PRIVATE KEY" not in created.content.decode()
    assert repo["location"] == f"sftp://{sshd.user}@127.0.0.1:{sshd.port}/{remote}/r{repo['id'].replace('-', '')}"

    # Not authorized yet: the init job says why, in plain words.
    repo = flow("get", "backup-repository-detail", pk=repo["id"], expect=200).json()
    assert repo["status"] in ("pending", "error"), repo
    assert "authorized_keys" in repo["last_error"], repo

    # Authorized: "test connection" passes and makes the repository (restic init over SFTP).
    sshd.authorize(repo["sftp_public_key"])
    flow("post", "backup-repository-test", pk=repo["id"], expect=202)
    repo = flow("get", "backup-repository-detail", pk=repo["id"], expect=200).json()
    assert repo["last_test_ok"] is True, repo
    assert repo["status"] == "active", repo
    stored = BackupRepository.all_tenants.get(pk=repo["id"])
    assert (remote / stored.restic_name / "config").is_file(), "the repository is not in the SSH server's folder"

    # Back up, list, change, restore in place: byte-identical, all over SFTP.
    snap = flow.backup(repo, "website", site.pk)
    assert snap["status"] == "done", snap
    assert len(snap["restic_id"]) == 64 and snap["files"] >= 4
    listed = flow("get", "backup-snapshot-list", query=f"?resource={site.pk}", expect=200).json()["results"]
    assert [s["restic_id"] for s in listed] == [snap["restic_id"]]
    before = tree(base)
    (base / "public" / "index.html").write_text("<h1>defaced</h1>")
    (base / "public" / "keep.txt").unlink()
    restore = flow.restore(snap)
    assert restore["status"] == "done", restore
    assert tree(base) == before, "the restore through SFTP is not byte-identical to the snapshot"
    assert nginx_node.wait_until("sftp.example.com", 200, contains="version one")[0] == 200

    # restic check over SFTP; sizes tracked; sshd saw the panel's key log in.
    flow("post", "backup-repository-check", pk=repo["id"], expect=202)
    repo = flow("get", "backup-repository-detail", pk=repo["id"], expect=200).json()
    assert repo["last_check_ok"] is True, repo
    assert repo["size_bytes"] > 0 and repo["snapshot_count"] == 2  # the backup and the pre-restore snapshot
    assert f"Accepted publickey for {sshd.user} from 127.0.0.1" in sshd.log()

    # Without mPanel: the export (re-authenticated) is all restic and ssh need to list the snapshots.
    access = flow("post", "backup-repository-export-password", {"password": PASSWORD}, pk=repo["id"], expect=200).json()
    assert access["backend"] == "sftp" and access["environment"]["RESTIC_REPOSITORY"] == repo["location"]
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    (outside / "id").write_text(access["sftp_private_key"])
    (outside / "id").chmod(0o600)
    (outside / "known_hosts").write_text(access["sftp_known_hosts"] + "\n")
    ssh = (
        f"ssh -F /dev/null -i {outside}/id -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes"
        f" -o UserKnownHostsFile={outside}/known_hosts -p {sshd.port} -l {sshd.user} 127.0.0.1 -s sftp"
    )
    env = {"PATH": os.environ["PATH"], **access["environment"]}
    command = [restic_bin, "-o", f"sftp.command={ssh}", "snapshots", "--json", "--no-cache"]
    listed = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert listed.returncode == 0, listed.stderr
    assert snap["restic_id"] in {s["id"] for s in json.loads(listed.stdout)}

    # Secrets: the private key is in no answer, audit record or job payload, and not left on the node.
    private = crypto.SFTP_KEYS.decrypt(stored.sftp_key_encrypted)
    body = "".join(private.splitlines()[1:-1])[:60]  # a piece of the key's base64
    texts = [flow("get", "backup-repository-list", expect=200).content.decode(),
             flow("get", "backup-repository-detail", pk=repo["id"], expect=200).content.decode()]  # fmt: skip
    texts += [json.dumps(e.changes) for e in AuditEvent.objects.filter(tenant=tenant_a.tenant)]
    texts += [json.dumps(j.payload) + json.dumps(j.result or {}) + (j.last_error or "")
              for j in Job.all_tenants.filter(tenant=tenant_a.tenant)]  # fmt: skip
    for text in texts:
        assert body not in text and "PRIVATE KEY" not in text and "sftp_key_encrypted" not in text
    keys = local_root() / "backups" / "keys"
    assert not keys.exists() or not any(keys.iterdir()), list(keys.iterdir())


def test_a_wrong_host_key_is_refused_in_plain_words(
    tenant_a, web_root, restic_bin, sshd, tmp_path, django_capture_on_commit_callbacks
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    other = tmp_path / "other"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -C '' -f {other}")
    wrong = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    repo = sftp_repository(flow, node, sshd, tmp_path / "repos", host_key=wrong).json()
    sshd.authorize(repo["sftp_public_key"])
    flow("post", "backup-repository-test", pk=repo["id"], expect=202)
    repo = flow("get", "backup-repository-detail", pk=repo["id"], expect=200).json()
    assert repo["last_test_ok"] is False and "host key" in repo["last_test_output"], repo
    assert repo["status"] != "active"
    assert not (tmp_path / "repos").exists(), "nothing is written to a server whose host key is wrong"


def test_the_connection_of_an_sftp_repository_can_be_changed(tenant_a, django_capture_on_commit_callbacks, sshd):
    """PATCH: a moved server, a new host key; another backend's setting is a 400; audited without secrets."""
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    repo = sftp_repository(flow, node, sshd, "/srv/nowhere").json()
    public = repo["sftp_public_key"]
    changed = flow("patch", "backup-repository-detail", {"sftp_port": 2222, "sftp_host": "backup-2.example.net"},
                   pk=repo["id"], expect=200).json()  # fmt: skip
    assert changed["sftp_port"] == 2222 and changed["sftp_host"] == "backup-2.example.net"
    assert changed["sftp_public_key"] == public, "the key is kept when none is given"
    bad = flow("patch", "backup-repository-detail", {"s3_bucket": "x-bucket"}, pk=repo["id"], expect=400).json()
    assert "s3_bucket" in json.dumps(bad)
    assert flow("patch", "backup-repository-detail", {"sftp_port": 0}, pk=repo["id"]).status_code == 400
    event = AuditEvent.objects.filter(action="backup.repository.update").get()
    assert "2222" in json.dumps(event.changes) and "PRIVATE" not in json.dumps(event.changes)


def test_an_sftp_session_ended_without_ssh_s_reason_is_still_explained():
    """Under load restic may give up before ssh's "Permission denied" or "Host key verification failed"
    reaches its output (CI saw both): the words name both causes."""
    from agent.backups import explain

    said = explain("Fatal: unable to open repository at sftp:x: unable to start the sftp session, error: EOF")
    assert "authorized_keys" in said and "host key" in said and "error: EOF" in said
    wrong = explain("Host key verification failed.\nunable to start the sftp session, error: EOF")
    assert wrong.startswith("the SSH server's host key is not the one given")
    refused = explain("subprocess ssh: Permission denied (publickey).\nunable to start the sftp session, error: EOF")
    assert refused.startswith("the SSH server refused the key")
