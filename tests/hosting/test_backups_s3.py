"""Backup repositories on S3-compatible object storage, through restic's ``s3:`` backend.

No S3 service can be reached from the test machine, so the S3-compatible endpoint restic talks to is
an EMULATOR: moto's standalone server (``moto[server]``, ``ThreadedMotoServer``) on a free loopback
port, spoken to over plain HTTP with the S3 API as any S3-compatible service (MinIO, Ceph, Wasabi…)
is. restic itself is Debian's real binary; only the storage is emulated.

Also here, needing no storage at all: each backend setting checked with a clear 400 (host names,
ports, S3 bucket naming rules, a setting of another backend), the secret key write-only and sealed,
in no answer, audit record or job payload."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.backups import crypto, services
from apps.backups.api import BackupRepositoryViewSet
from apps.backups.models import BackupRepository
from apps.backups.validators import new_key_pair
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.backups_support import Flow, backup_node_in, restic_bin, tree  # noqa: F401  (fixtures)
from tests.conftest import PASSWORD, client_for
from tests.hosting.test_backups_admin import console  # noqa: F401  (fixture)
from tests.hosting.test_backups_admin import url as admin_url
from tests.hosting.test_backups_restic import fill, make_site, site_dir
from tests.web_support import free_port, nginx_node, web_root  # noqa: F401

pytestmark = pytest.mark.django_db

ACCESS_KEY = "AKIAMPANELTEST0001"
SECRET_KEY = "s3-secret-Wq8v3NfZ2kLp9Rt"


@pytest.fixture
def s3_emulator() -> Iterator[str]:
    """moto's S3 server on loopback (an emulator: no real S3 can run here); yields its endpoint URL."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed (the test extras)")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_body(node, endpoint: str, **extra) -> dict:
    return {"name": "objects", "node": str(node.pk), "backend": "s3", "s3_endpoint": endpoint,
            "s3_bucket": "mpanel-backups-test", "s3_region": "eu-central-1", "s3_access_key_id": ACCESS_KEY,
            "s3_secret_key": SECRET_KEY, **extra}  # fmt: skip


def test_a_website_backed_up_listed_and_restored_through_an_s3_repository(
    tenant_a, nginx_node, restic_bin, s3_emulator, django_capture_on_commit_callbacks
):
    """Through the S3 emulator (moto): init, backup, list, restore in place byte for byte, check."""
    import boto3

    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    site = make_site(flow, "objects.example.com")
    base = site_dir(nginx_node.root, site)
    fill(base, site)

    created = flow("post", "backup-repository-list", s3_body(node, s3_emulator), expect=201)
    assert SECRET_KEY not in created.content.decode() and "s3_secret_key" not in created.json()
    repo = flow("get", "backup-repository-detail", pk=created.json()["id"], expect=200).json()
    assert repo["status"] == "active", repo
    stored = BackupRepository.all_tenants.get(pk=repo["id"])
    assert repo["location"] == f"s3:{s3_emulator}/mpanel-backups-test/{stored.restic_name}"

    # The repository is in the bucket, under its own prefix (seen with an S3 client of its own).
    s3 = boto3.client("s3", endpoint_url=s3_emulator, region_name="eu-central-1", aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key=SECRET_KEY)  # fmt: skip
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mpanel-backups-test")["Contents"]]
    assert f"{stored.restic_name}/config" in keys, keys

    flow("post", "backup-repository-test", pk=repo["id"], expect=202)
    repo = flow("get", "backup-repository-detail", pk=repo["id"], expect=200).json()
    assert repo["last_test_ok"] is True and "restic opened" in repo["last_test_output"], repo

    snap = flow.backup(repo, "website", site.pk)
    assert snap["status"] == "done" and len(snap["restic_id"]) == 64, snap
    listed = flow("get", "backup-snapshot-list", query=f"?resource={site.pk}", expect=200).json()["results"]
    assert [s["restic_id"] for s in listed] == [snap["restic_id"]]
    before = tree(base)
    (base / "public" / "index.html").write_text("<h1>defaced</h1>")
    (base / "public" / "keep.txt").unlink()
    restore = flow.restore(snap)
    assert restore["status"] == "done", restore
    assert tree(base) == before, "the restore from S3 is not byte-identical to the snapshot"
    response = flow("get", "backup-snapshot-download", pk=snap["id"], query="?path=public/index.html", expect=200)
    assert b"".join(response.streaming_content) == b"<h1>version one</h1>"

    flow("post", "backup-repository-check", pk=repo["id"], expect=202)
    repo = flow("get", "backup-repository-detail", pk=repo["id"], expect=200).json()
    assert repo["last_check_ok"] is True, repo
    assert repo["size_bytes"] > 0 and repo["snapshot_count"] == 2

    # Without mPanel: the export's environment is all restic needs (the bucket's keys with it).
    access = flow("post", "backup-repository-export-password", {"password": PASSWORD}, pk=repo["id"], expect=200).json()
    assert access["backend"] == "s3" and access["s3_secret_key"] == SECRET_KEY
    env = {"PATH": os.environ["PATH"], **access["environment"]}
    command = [restic_bin, "snapshots", "--json", "--no-cache"]
    listed = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert listed.returncode == 0, listed.stderr
    assert snap["restic_id"] in {s["id"] for s in json.loads(listed.stdout)}

    # The secret key: sealed at rest, in no answer, audit record or job payload.
    stored.refresh_from_db()
    assert SECRET_KEY not in stored.s3_secret_encrypted and crypto.S3_SECRETS.decrypt(stored.s3_secret_encrypted)
    texts = [flow("get", "backup-repository-list", expect=200).content.decode()]
    texts += [json.dumps(e.changes) for e in AuditEvent.objects.filter(tenant=tenant_a.tenant)]
    texts += [json.dumps(j.payload) + json.dumps(j.result or {}) + (j.last_error or "")
              for j in Job.all_tenants.filter(tenant=tenant_a.tenant)]  # fmt: skip
    for text in texts:
        assert SECRET_KEY not in text and "s3_secret_encrypted" not in text


def test_an_unreachable_s3_endpoint_is_reported_in_plain_words(
    tenant_a, web_root, restic_bin, django_capture_on_commit_callbacks
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    nowhere = f"http://127.0.0.1:{free_port()}"
    repo = flow("post", "backup-repository-list", s3_body(node, nowhere), expect=201).json()
    flow("post", "backup-repository-test", pk=repo["id"], expect=202)
    repo = flow("get", "backup-repository-detail", pk=repo["id"], expect=200).json()
    assert repo["last_test_ok"] is False and "nothing answers" in repo["last_test_output"], repo
    assert repo["status"] != "active"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"backend": "ftp"}, "backend"),
        ({"s3_bucket": "Bad_Bucket"}, "s3_bucket"),
        ({"s3_bucket": "ab"}, "s3_bucket"),
        ({"s3_bucket": "my..bucket"}, "s3_bucket"),
        ({"s3_bucket": "192.168.1.10"}, "s3_bucket"),
        ({"s3_bucket": "xn--bucket"}, "s3_bucket"),
        ({"s3_bucket": "bucket-s3alias"}, "s3_bucket"),
        ({"s3_endpoint": "ftp://s3.example.com"}, "s3_endpoint"),
        ({"s3_endpoint": "https://s3.example.com/bucket"}, "s3_endpoint"),
        ({"s3_endpoint": "https://bad_host.example.com"}, "s3_endpoint"),
        ({"s3_endpoint": "https://s3.example.com:99999"}, "s3_endpoint"),
        ({"s3_endpoint": "https://user:pw@s3.example.com"}, "s3_endpoint"),
        ({"s3_region": "EU Central"}, "s3_region"),
        ({"s3_access_key_id": ""}, "s3_access_key_id"),
        ({"s3_secret_key": "short"}, "s3_secret_key"),
        ({"s3_secret_key": "has a space in it"}, "s3_secret_key"),
        ({"sftp_host": "backup.example.com"}, "sftp_host"),
    ],
)
def test_bad_s3_settings_are_a_400_naming_the_field(tenant_a, monkeypatch, change, field):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    node = backup_node_in(tenant_a)
    response = admin.post(reverse("backup-repository-list"), s3_body(node, "https://s3.example.com", **change),
                          format="json")  # fmt: skip
    assert response.status_code == 400, response.content
    assert field in json.dumps(response.json()), response.json()
    assert not BackupRepository.all_tenants.filter(tenant=tenant_a.tenant).exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sftp_host": "-bad-.example.com"}, "sftp_host"),
        ({"sftp_host": "a" * 64 + ".example.com"}, "sftp_host"),
        ({"sftp_port": 70000}, "sftp_port"),
        ({"sftp_user": "Root; rm"}, "sftp_user"),
        ({"sftp_path": "/srv/../etc"}, "sftp_path"),
        ({"sftp_path": "/srv/back ups"}, "sftp_path"),
        ({"sftp_host_key": ""}, "sftp_host_key"),
        ({"sftp_host_key": "ssh-ed25519 bm90LWEta2V5"}, "sftp_host_key"),
        ({"sftp_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n-----END OPENSSH PRIVATE KEY-----"},
         "sftp_private_key"),
        ({"s3_bucket": "some-bucket"}, "s3_bucket"),
    ],
)  # fmt: skip
def test_bad_sftp_settings_are_a_400_naming_the_field(tenant_a, monkeypatch, change, field):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    node = backup_node_in(tenant_a)
    key = new_key_pair("host")[1].rsplit(" ", 1)[0]  # a valid public key, as a host key
    body = {"name": "offsite", "node": str(node.pk), "backend": "sftp", "sftp_host": "backup.example.com",
            "sftp_user": "backup", "sftp_path": "/srv/backups", "sftp_host_key": key, **change}  # fmt: skip
    response = admin.post(reverse("backup-repository-list"), body, format="json")
    assert response.status_code == 400, response.content
    assert field in json.dumps(response.json()), response.json()
    assert not BackupRepository.all_tenants.filter(tenant=tenant_a.tenant).exists()


def test_a_member_cannot_create_or_test_a_repository(tenant_a, monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    node = backup_node_in(tenant_a)
    response = member.post(reverse("backup-repository-list"), s3_body(node, "https://s3.example.com"), format="json")
    assert response.status_code == 403


class TestConnectionSettingsApi(ApiTestCase):
    """The repository routes' matrix with SFTP repositories, whose connection can be PATCHed (ADMIN+)."""

    viewset = BackupRepositoryViewSet
    basename = "backup-repository"
    roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER, "create": Role.ADMIN, "partial_update": Role.ADMIN}

    @pytest.fixture(autouse=True)
    def no_dispatch(self, monkeypatch):
        monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)

    def body(self, fx, seq) -> dict:
        return {"name": f"sftp{seq}", "node": str(backup_node_in(fx).pk), "backend": "sftp",
                "sftp_host": "backup.example.net", "sftp_user": "backup", "sftp_path": "/srv/backups",
                "sftp_host_key": new_key_pair("host")[1].rsplit(" ", 1)[0]}  # fmt: skip

    def make(self, fx, seq):
        data = self.body(fx, seq)
        data.pop("node")
        return services.repository_create(tenant=fx.tenant, node=backup_node_in(fx), actor=None, **data)

    def create_payload(self, fx, seq):
        return self.body(fx, seq)

    def update_payload(self, fx, obj, seq):
        return {"sftp_port": 2000 + seq}


def test_sftp_and_s3_repositories_added_and_tested_in_the_admin(console, tenant_a):
    """The add page takes the backend and its settings (secrets write-only) through the service; the
    pages show the public key and no secret; "Test connection" stores its job; "Change connection"
    rotates the S3 secret through the service."""
    node = backup_node_in(tenant_a)
    host_key = new_key_pair("host")[1].rsplit(" ", 1)[0]
    add = admin_url(BackupRepository, "add") + f"?tenant={tenant_a.tenant.pk}"
    base = {"tenant": str(tenant_a.tenant.pk), "node": str(node.pk)}
    sftp_form = {"name": "offsite", "backend": "sftp", "sftp_host": "backup.example.net", "sftp_user": "backup",
                 "sftp_path": "/srv/backups", "sftp_host_key": host_key}  # fmt: skip
    response = console.post(add, {**base, **sftp_form})
    assert response.status_code == 302, response.content[:2000]
    sftp = BackupRepository.all_tenants.get(name="offsite")
    assert sftp.backend == "sftp" and sftp.sftp_public_key.startswith("ssh-ed25519 ") and sftp.sftp_key_encrypted
    response = console.post(add, {**base, "name": "objects", "backend": "s3", "s3_endpoint": "https://s3.example.com",
                                  "s3_bucket": "mpanel-backups", "s3_access_key_id": ACCESS_KEY,
                                  "s3_secret_key": SECRET_KEY})  # fmt: skip
    assert response.status_code == 302, response.content[:2000]
    s3 = BackupRepository.all_tenants.get(name="objects")
    bad_form = {"name": "bad", "backend": "s3", "s3_endpoint": "https://s3.example.com", "s3_bucket": "Bad..Bucket",
                "s3_access_key_id": ACCESS_KEY, "s3_secret_key": SECRET_KEY}  # fmt: skip
    bad = console.post(add, {**base, **bad_form})
    assert bad.status_code == 200 and b"bucket name" in bad.content
    assert not BackupRepository.all_tenants.filter(name="bad").exists()

    for repo in (sftp, s3):
        page = console.get(admin_url(BackupRepository, "change", repo.pk)).content.decode()
        assert "PRIVATE KEY" not in page and SECRET_KEY not in page
    assert sftp.sftp_public_key in console.get(admin_url(BackupRepository, "change", sftp.pk)).content.decode()

    action = reverse("admin:backups_backuprepository_object_action", args=[sftp.pk, "test"])
    assert console.post(action).status_code == 302
    assert Job.all_tenants.filter(type="backup.repository.test", payload__repository=str(sftp.pk)).exists()

    action = reverse("admin:backups_backuprepository_object_action", args=[s3.pk, "connection"])
    assert console.post(action, {"s3_secret_key": "rotated-secret-0123"}).status_code == 302
    s3.refresh_from_db()
    assert crypto.S3_SECRETS.decrypt(s3.s3_secret_encrypted) == "rotated-secret-0123"
    event = AuditEvent.objects.filter(action="backup.repository.update").get()
    assert "rotated" not in json.dumps(event.changes) and event.actor_id == console.operator.pk
