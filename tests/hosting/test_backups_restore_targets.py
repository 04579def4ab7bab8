"""Restores into a new mailbox, a new DNS zone and a new CloudPod (``{"target": "new", ...}``), each
made by its own app's create service (its rules, its limits), on the real data plane the in-place
restore tests use: Dovecot read over IMAP, the zone's records, a real runc container."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

from datetime import date

import pytest

from apps.backups import services
from apps.backups.models import Restore, Snapshot, SnapshotStatus
from apps.cloudpods import services as pod_services
from apps.cloudpods.models import CloudPod
from apps.common.exceptions import DomainError
from apps.dns import services as dns_services
from apps.dns.models import Zone
from apps.mail.models import Mailbox
from apps.nodes.drivers import LocalDriver
from apps.nodes.models import Node
from tests.backups_support import (  # noqa: F401  (fixtures)
    Flow,
    backed_up_zone,
    backup_node_in,
    restic_bin,
    run_jobs_only,
    runc,
    zone_records,
    zone_root,
)
from tests.hosting.test_backups_mail import imap_subjects, make_mailbox, messages
from tests.hosting.test_mail import PASSWORD, light_crypto  # noqa: F401  (fixture)
from tests.mail_support import dovecot, mail_node_root, mail_tmp  # noqa: F401
from tests.pods_support import node_root, pod_in  # noqa: F401

pytestmark = pytest.mark.django_db


def test_a_mailbox_restored_into_a_new_mailbox_of_its_domain_reads_its_mail_over_imap(
    tenant_a, dovecot, mail_node_root, restic_bin, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setenv("MPANEL_MAIL_HOME", str(dovecot.maildirs))
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    box = make_mailbox(flow, "copies.example", "erin")
    message = b"From: bob@elsewhere.example\r\nTo: erin@copies.example\r\nSubject: kept\r\n\r\nbody\r\n"
    assert dovecot.deliver(message, to="erin@copies.example", sender="bob@elsewhere.example").returncode == 0
    repo = flow.repository(backup_node_in(tenant_a, "mail-1"))
    snap = flow.backup(repo, "mailbox", box.pk)
    assert snap["status"] == "done", snap

    restore = flow.restore_new(snap, name="erin-copy", password=PASSWORD)
    assert restore["status"] == "done" and not restore["in_place"], restore
    assert restore["target_label"] == "erin-copy@copies.example", restore
    made = Mailbox.all_tenants.get(pk=restore["target_id"])
    assert made.mail_domain_id == box.mail_domain_id and made.quota_mb == box.quota_mb
    assert imap_subjects(dovecot.port, "erin-copy@copies.example") == ["kept"]
    assert imap_subjects(dovecot.port, "erin@copies.example") == ["kept"], "the original changed"

    # The default local part; the mail app's rules: a taken address or a bad local part is a 400, nothing made.
    restore = flow.restore_new(snap)
    assert restore["target_label"] == f"erin-restored-{date.today():%Y%m%d}@copies.example", restore
    assert restore["status"] == "done", restore
    boxes, restores = Mailbox.all_tenants.count(), Restore.all_tenants.count()
    for name in ("erin", "bad local part!"):
        refused = flow("post", "backup-snapshot-restore", {"target": "new", "name": name}, pk=snap["id"])
        assert refused.status_code == 400, refused.content
    # A name or a password goes only with "new"; a hostname is not a mailbox's.
    assert flow("post", "backup-snapshot-restore", {"name": "x"}, pk=snap["id"]).status_code == 400
    refused = flow("post", "backup-snapshot-restore", {"target": "new", "hostname": "x.example"}, pk=snap["id"])
    assert refused.status_code == 400, refused.content
    assert Mailbox.all_tenants.count() == boxes and Restore.all_tenants.count() == restores
    assert messages(dovecot.maildirs / "copies.example" / "erin-copy")


@pytest.fixture
def backup_and_pod_jobs(monkeypatch):
    run_jobs_only(monkeypatch, "backup.", "cloudpod.")


def test_a_zone_restored_into_a_new_zone_of_the_callers_name_has_its_records(
    tenant_a, tenant_b, zone_root, restic_bin, backup_and_pod_jobs, django_capture_on_commit_callbacks
):
    node = backup_node_in(tenant_a, "dns-1")
    zone, snap, before = backed_up_zone(tenant_a, node, "first-zone.example", django_capture_on_commit_callbacks)

    with tenant_a.scope(), django_capture_on_commit_callbacks(execute=True):
        restore = services.restore_create(snapshot=snap, target_id="new", name="second-zone.example")
    restore = Restore.all_tenants.get(pk=restore.pk)
    assert restore.status == "done" and not restore.in_place, restore.last_error
    made = Zone.all_tenants.get(pk=restore.target_id)
    assert made.name == "second-zone.example" and made.node_id == node.pk and made.tenant_id == tenant_a.tenant.pk
    assert zone_records(made) == before  # names relative to the new zone; contents as they were
    assert zone_records(Zone.all_tenants.get(pk=zone.pk)) == before

    # The DNS rules: a name is required and valid, and not under another tenant's zone; nothing is made.
    with tenant_b.scope():
        dns_services.zone_create(tenant=tenant_b.tenant, name="theirs.example", node=backup_node_in(tenant_b, "dns-b"))
    zones = Zone.all_tenants.count()
    for name in ("", "not a zone", "theirs.example", "sub.theirs.example", "first-zone.example"):
        with tenant_a.scope(), pytest.raises(DomainError):
            services.restore_create(snapshot=snap, target_id="new", name=name)
    assert Zone.all_tenants.count() == zones


def test_a_pod_restored_into_a_new_pod_on_the_same_plan_and_node_has_the_files(
    tenant_a, node_root, restic_bin, backup_and_pod_jobs, django_capture_on_commit_callbacks
):
    node = backup_node_in(tenant_a, "node-1")
    with tenant_a.scope():  # room for pods on the backup node
        Node.objects.filter(pk=node.pk).update(vcpu=1000, memory_mb=1_000_000, disk_gb=100_000, max_pods=10_000)
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

    with tenant_a.scope(), django_capture_on_commit_callbacks(execute=True):
        restore = services.restore_create(snapshot=snap, target_id="new", name="pod-copy")
    restore = Restore.all_tenants.get(pk=restore.pk)
    assert restore.status == "done" and not restore.in_place, restore.last_error
    made = CloudPod.all_tenants.get(pk=restore.target_id)
    assert (made.name, made.plan, made.node_id, made.status) == ("pod-copy", pod.plan, node.pk, "running")
    read = runc(node_root, "exec", made.container_id, "cat", "/data.txt")
    assert read.returncode == 0 and read.stdout.strip() == "kept", read
    assert LocalDriver().pod_state(pod.container_id) == "running"

    # The pods rules: a bad or taken name is a 400 and nothing is made.
    pods = CloudPod.all_tenants.count()
    for name in ("Bad_Name", "pod-copy"):
        with tenant_a.scope(), pytest.raises(DomainError) as refused:
            services.restore_create(snapshot=snap, target_id="new", name=name)
        assert refused.value.status_code == 400, refused.value
    assert CloudPod.all_tenants.count() == pods
