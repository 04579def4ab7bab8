"""The final snapshot before a delete runs as a job, not inside the delete request: the request marks
the site deleting and answers 202 at once; the site is removed from its node only by its delete job,
which is stored when the final snapshot has been taken. Real restic and nginx."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

import pytest
from django.urls import reverse

from apps.backups.models import Snapshot, SnapshotStatus
from apps.jobs.models import Job, JobStatus
from apps.websites.models import Website
from tests.backups_support import Flow, backup_node_in, restic_bin  # noqa: F401  (fixtures)
from tests.hosting.test_backups_restic import make_site, site_dir
from tests.web_support import nginx_node, web_root  # noqa: F401

pytestmark = pytest.mark.django_db


def test_the_delete_answers_at_once_and_the_files_go_only_after_the_final_snapshot(
    tenant_a, nginx_node, restic_bin, django_capture_on_commit_callbacks
):
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    node = backup_node_in(tenant_a)
    site = make_site(flow, "final-job.example.com")
    index = site_dir(nginx_node.root, site) / "public" / "index.html"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text("<h1>last words</h1>")
    repo = flow.repository(node)
    body = {"name": "sites", "repository": repo["id"], "final_keep_days": 3, "resources": [f"website:{site.pk}"]}
    flow("post", "backup-policy-list", body, expect=201)

    # The request: the site is deleting at once, the final snapshot waits for its job, nothing is removed.
    with django_capture_on_commit_callbacks(execute=False) as stored:
        response = flow.client.delete(reverse("website-detail", kwargs={"pk": site.pk}))
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "deleting"
    final = Snapshot.all_tenants.get(resource_id=site.pk)
    assert (final.reason, final.status) == ("final", SnapshotStatus.PENDING)
    jobs = set(Job.all_tenants.filter(object_id__in=[str(site.pk), str(final.pk)]).values_list("type", flat=True))
    assert "backup.snapshot.final" in jobs and "website.delete" not in jobs, jobs
    assert index.exists()
    assert nginx_node.get("final-job.example.com")[0] == 200, "the site went before its final snapshot"

    # The jobs: the final snapshot, then (stored by it) the delete.
    with django_capture_on_commit_callbacks(execute=True):
        for callback in stored:
            callback()
    final.refresh_from_db()
    assert final.status == SnapshotStatus.DONE and final.restic_id, final.last_error
    delete = Job.all_tenants.get(type="website.delete", object_id=str(site.pk))
    assert delete.status == JobStatus.SUCCEEDED and delete.created_at > final.created_at
    assert Website.all_tenants.get(pk=site.pk).status == "deleted"
    assert nginx_node.wait_until("final-job.example.com", 404)[0] == 404
    response = flow("get", "backup-snapshot-download", pk=final.pk, query="?path=public/index.html", expect=200)
    assert b"".join(response.streaming_content) == b"<h1>last words</h1>"
