"""Backups of a CloudPod's rootfs (a real runc container, paused for the copy) and of a DNS zone
(its master file through restic's stdin), restored in place. Only the backup jobs run here: the
pod is made by the node driver directly and the zone's own push jobs are stored, not run."""

# ruff: noqa: F401, F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

import pytest

from apps.backups import services
from apps.backups.models import Restore, Snapshot, SnapshotStatus
from apps.cloudpods import services as pod_services
from apps.dns import services as dns_services
from apps.nodes.drivers import LocalDriver
from tests.backups_support import (
    backed_up_zone,
    backup_node_in,
    restic_bin,
    run_jobs_only,
    runc,
    zone_records,
    zone_root,
)
from tests.pods_support import node_root, pod_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def backup_jobs_only(monkeypatch):
    run_jobs_only(monkeypatch, "backup.")


def test_a_pod_rootfs_is_backed_up_paused_and_restored(
    tenant_a, node_root, restic_bin, backup_jobs_only, django_capture_on_commit_callbacks
):
    node = backup_node_in(tenant_a, "node-1")
    pod = pod_in(tenant_a, 1, node=node)
    LocalDriver().pod_create(pod_services.pod_spec(pod))
    assert runc(node_root, "exec", pod.container_id, "sh", "-c", "echo kept > /data.txt").returncode == 0
    with tenant_a.scope(), django_capture_on_commit_callbacks(execute=True):
        repo = services.repository_create(tenant=tenant_a.tenant, name="pods", node=node)
    with tenant_a.scope(), django_capture_on_commit_callbacks(execute=True):
        snap = services.snapshot_create(tenant=tenant_a.tenant, repository=repo, resource_kind="pod",
                                        resource_id=pod.pk)  # fmt: skip
    snap = Snapshot.all_tenants.get(pk=snap.pk)
    assert snap.status == SnapshotStatus.DONE, snap.last_error
    assert LocalDriver().pod_state(pod.container_id) == "running", "the pod was not thawed after the copy"

    assert runc(node_root, "exec", pod.container_id, "sh", "-c", "rm /data.txt; echo bad > /other.txt").returncode == 0
    with tenant_a.scope(), django_capture_on_commit_callbacks(execute=True):
        restore = services.restore_create(snapshot=snap)
    restore = Restore.all_tenants.get(pk=restore.pk)
    assert restore.status == "done", restore.last_error
    assert LocalDriver().pod_state(pod.container_id) == "running"
    read = runc(node_root, "exec", pod.container_id, "cat", "/data.txt")
    assert read.returncode == 0 and read.stdout.strip() == "kept", read
    assert runc(node_root, "exec", pod.container_id, "test", "-e", "/other.txt").returncode != 0


def test_a_zone_is_backed_up_as_a_master_file_and_restored(
    tenant_a, zone_root, restic_bin, backup_jobs_only, django_capture_on_commit_callbacks
):
    node = backup_node_in(tenant_a, "dns-1")
    zone, snap, before = backed_up_zone(tenant_a, node, "backup-zone.example", django_capture_on_commit_callbacks)
    with tenant_a.scope():
        for record in list(zone.records.all()):
            dns_services.record_delete(record=record)
        dns_services.record_create(zone=zone, name="evil", type="A", content="203.0.113.66")
    with tenant_a.scope(), django_capture_on_commit_callbacks(execute=True):
        restore = services.restore_create(snapshot=snap)
    assert Restore.all_tenants.get(pk=restore.pk).status == "done"
    assert zone_records(zone) == before
