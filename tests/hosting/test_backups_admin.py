"""Backups in the operators' console: the pages load with badges and sizes and no password; the
snapshot's "Restore" asks for confirmation first, then goes through the service (a restore, audited
as the operator's)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.backups import crypto
from apps.backups.models import BackupPolicy, BackupRepository, Drill, Restore, Snapshot
from apps.jobs import services as job_services
from tests.conftest import PASSWORD, admin_login
from tests.hosting.test_backups_api import repo_in, snapshot_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, db, monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    operator = get_user_model().objects.create_superuser("operator@mpanel.test", PASSWORD)
    admin_login(client, operator)
    client.operator = operator
    return client


def url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_pages_show_badges_sizes_and_never_the_password(console, tenant_a):
    snap = snapshot_in(tenant_a, 1)
    repo = BackupRepository.all_tenants.get(pk=snap.repository_id)
    BackupRepository.all_tenants.filter(pk=repo.pk).update(size_bytes=5 * 1024 * 1024, last_check_ok=False,
                                                           last_check_at=timezone.now())  # fmt: skip
    with tenant_a.scope():
        policy = BackupPolicy.objects.create(tenant=tenant_a.tenant, name="nightly", repository=repo,
                                             last_run_status="ok", last_run_at=timezone.now(),
                                             last_drill_status="failed", last_drill_at=timezone.now())  # fmt: skip
    secret = crypto.decrypt(repo.password_encrypted)
    pages = [url(BackupRepository, "changelist"), url(BackupRepository, "change", repo.pk),
             url(BackupPolicy, "changelist"), url(BackupPolicy, "change", policy.pk), url(Snapshot, "changelist"),
             url(Snapshot, "change", snap.pk), url(Restore, "changelist"), url(Drill, "changelist"),
             url(BackupPolicy, "add"), url(BackupRepository, "add")]  # fmt: skip
    for page in pages:
        response = console.get(page)
        assert response.status_code == 200, page
        text = response.content.decode()
        assert secret not in text and repo.password_encrypted not in text, page
    policies = console.get(url(BackupPolicy, "changelist")).content.decode()
    assert 'data-status="failed"' in policies and 'data-status="ok"' in policies
    assert "5.0" in console.get(url(BackupRepository, "changelist")).content.decode()
    assert "Restore" in console.get(url(Snapshot, "change", snap.pk)).content.decode()


def test_restore_asks_first_then_runs_the_service(console, tenant_a):
    snap = snapshot_in(tenant_a, 2)
    action = reverse("admin:backups_snapshot_object_action", args=[snap.pk, "restore"])
    asked = console.post(action)
    assert asked.status_code == 200 and not Restore.all_tenants.exists()
    done = console.post(action, {"confirmed": "yes"})
    assert done.status_code == 302
    restore = Restore.all_tenants.get()
    assert restore.in_place and restore.snapshot_id == snap.pk
    event = AuditEvent.objects.get(action="backup.restore.create")
    assert event.actor_id == console.operator.pk and event.via == "operator"


def test_a_repository_added_in_the_admin_goes_through_the_service(console, tenant_a):
    repo = repo_in(tenant_a)
    node = repo.node
    response = console.post(url(BackupRepository, "add") + f"?tenant={tenant_a.tenant.pk}",
                            {"tenant": str(tenant_a.tenant.pk), "name": "second", "node": str(node.pk)})  # fmt: skip
    assert response.status_code == 302, response.content[:2000]
    made = BackupRepository.all_tenants.get(name="second")
    assert made.password_encrypted and AuditEvent.objects.filter(action="backup.repository.create").count() == 2
