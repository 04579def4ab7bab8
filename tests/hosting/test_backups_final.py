"""The final snapshot before a delete (apps.jobs.lifecycle.BEFORE_DELETE): a website under a backup
policy is snapshotted once more when it is deleted (kept the policy's ``final_keep_days``, then
forgotten); the final snapshot is a job the delete waits for, and one that fails leaves the site
(``error``, its files in place) and says why, unless an ADMIN+ forces the delete; a website no
policy names is deleted without one. Real restic and nginx."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.backups import services
from apps.backups.models import BackupRepository, Snapshot, SnapshotStatus
from apps.jobs import services as job_services
from apps.jobs.models import Job, JobStatus
from apps.tenancy.roles import Role
from apps.websites.models import Website
from tests.backups_support import Flow, backup_node_in, restic_bin  # noqa: F401  (fixtures)
from tests.hosting.test_backups_restic import make_site, repo_path, restic_snapshots, site_dir
from tests.web_support import nginx_node, web_root  # noqa: F401

pytestmark = pytest.mark.django_db


def test_deleting_a_backed_up_site_takes_a_final_snapshot_and_a_failed_one_blocks_unless_forced(
    tenant_a, nginx_node, restic_bin, django_capture_on_commit_callbacks
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    kept, lost, loose = (make_site(flow, f"{n}.example.com") for n in ("kept", "lost", "loose"))
    for site in (kept, lost):
        (site_dir(nginx_node.root, site) / "public").mkdir(parents=True, exist_ok=True)
        (site_dir(nginx_node.root, site) / "public" / "index.html").write_text(f"<h1>{site.primary_domain}</h1>")
    repo = flow.repository(node)
    body = {"name": "sites", "repository": repo["id"], "final_keep_days": 5,
            "resources": [f"website:{kept.pk}", f"website:{lost.pk}"]}  # fmt: skip
    policy = flow("post", "backup-policy-list", body, expect=201).json()
    assert policy["final_keep_days"] == 5

    # Deleted: a final snapshot first, kept 5 days, tagged in the repository.
    flow("delete", "website-detail", pk=kept.pk, expect=202)
    assert Website.all_tenants.get(pk=kept.pk).status in ("deleting", "deleted")
    final = Snapshot.all_tenants.get(resource_id=kept.pk)
    assert (final.reason, final.status, str(final.policy_id)) == ("final", "done", policy["id"])
    assert abs(final.keep_until - (timezone.now() + timedelta(days=5))) < timedelta(minutes=5)
    stored = BackupRepository.all_tenants.get(pk=repo["id"])
    tagged = [s for s in restic_snapshots(stored) if "reason-final" in (s.get("tags") or [])]
    assert [s["id"] for s in tagged] == [final.restic_id]
    # Its file is still there to download after the site is gone.
    response = flow("get", "backup-snapshot-download", pk=final.pk, query="?path=public/index.html", expect=200)
    assert b"".join(response.streaming_content) == b"<h1>kept.example.com</h1>"

    # Not named by any policy: deleted without a snapshot.
    flow("delete", "website-detail", pk=loose.pk, expect=202)
    assert not Snapshot.all_tenants.filter(resource_id=loose.pk).exists()

    # The repository is damaged: the final backup fails, and the delete is refused and says why.
    config = repo_path(stored) / "config"
    config.chmod(0o600)
    whole = config.read_bytes()
    config.write_bytes(b"not a restic config")
    # The final backup is a job the delete waits for: it fails (tried again while attempts are left);
    # the site stays (error) and says why.
    flow("delete", "website-detail", pk=lost.pk, expect=202)
    assert Website.all_tenants.get(pk=lost.pk).status == "deleting"
    job = Job.all_tenants.get(type="backup.snapshot.final", payload__then__pk=str(lost.pk))
    while job.status == JobStatus.PENDING:
        Job.all_tenants.filter(pk=job.pk).update(run_after=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            job_services.run_job(job.pk)
        job.refresh_from_db()
    assert job.attempts == job.max_attempts
    back = Website.all_tenants.get(pk=lost.pk)
    assert back.status == "error" and "final backup" in back.last_error and "force" in back.last_error, back.last_error
    assert (site_dir(nginx_node.root, lost) / "public" / "index.html").exists(), "a file went without its backup"
    failed = Snapshot.all_tenants.get(resource_id=lost.pk)
    assert failed.status == SnapshotStatus.ERROR and "final backup failed" in failed.last_error
    # ?force=true by a MEMBER is refused; by an ADMIN it deletes, the failure recorded.
    member = Flow(django_capture_on_commit_callbacks, tenant_a, role=Role.MEMBER)
    assert member("delete", "website-detail", pk=lost.pk, query="?force=true").status_code == 403
    flow("delete", "website-detail", pk=lost.pk, query="?force=true", expect=202)
    assert Website.all_tenants.get(pk=lost.pk).status in ("deleting", "deleted")
    failed = Snapshot.all_tenants.filter(resource_id=lost.pk)
    assert [s.status for s in failed] == [SnapshotStatus.ERROR] * 2
    assert all("final backup failed" in s.last_error for s in failed)

    # Repaired, and past its keep_until: the schedule forgets the final snapshot.
    config.write_bytes(whole)
    Snapshot.all_tenants.filter(pk=final.pk).update(keep_until=timezone.now() - timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.expire_final_snapshots() == 1
    final.refresh_from_db()
    assert final.status == SnapshotStatus.FORGOTTEN
    assert not [s for s in restic_snapshots(stored) if s["id"] == final.restic_id]
