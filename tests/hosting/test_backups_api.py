"""Backups' API matrix (every route, every role, another tenant), without running restic: jobs are
stored, not dispatched. And the rules that need no node: password secrecy in answers, audit and job
payloads, export with re-authentication, a restore into another tenant's resource refused."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.backups import crypto, services
from apps.backups.api import (
    BackupPolicyViewSet,
    BackupRepositoryViewSet,
    DrillViewSet,
    RestoreViewSet,
    SnapshotViewSet,
)
from apps.backups.models import BackupRepository, Restore, Snapshot, SnapshotStatus
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.backups_support import backup_node_in
from tests.conftest import PASSWORD, client_for
from tests.web_support import website_in

READ = {"list": Role.MEMBER, "retrieve": Role.MEMBER}


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


def repo_in(fx, name: str = "main") -> BackupRepository:
    with fx.scope():
        found = BackupRepository.objects.filter(name=name).first()
        return found or services.repository_create(tenant=fx.tenant, name=name, node=backup_node_in(fx))


def snapshot_in(fx, seq) -> Snapshot:
    with fx.scope():
        site = website_in(fx, seq, node=backup_node_in(fx))
        snap = services.snapshot_create(tenant=fx.tenant, repository=repo_in(fx), resource_kind="website",
                                        resource_id=site.pk)  # fmt: skip
        Snapshot.objects.filter(pk=snap.pk).update(status=SnapshotStatus.DONE, restic_id=f"{seq:08x}" * 8)
        snap.refresh_from_db()
        return snap


class TestRepositoryApi(ApiTestCase):
    viewset = BackupRepositoryViewSet
    basename = "backup-repository"
    roles = {**READ, "create": Role.ADMIN}

    def make(self, fx, seq):
        return services.repository_create(tenant=fx.tenant, name=f"repo{seq}", node=backup_node_in(fx))

    def create_payload(self, fx, seq):
        return {"name": f"new{seq}", "node": str(backup_node_in(fx).pk)}


class TestPolicyApi(ApiTestCase):
    viewset = BackupPolicyViewSet
    basename = "backup-policy"
    roles = {**READ, "create": Role.ADMIN, "partial_update": Role.ADMIN, "destroy": Role.ADMIN}

    def make(self, fx, seq):
        return services.policy_create(tenant=fx.tenant, name=f"p{seq}", repository=repo_in(fx))

    def create_payload(self, fx, seq):
        return {"name": f"n{seq}", "repository": str(repo_in(fx).pk), "schedule": "15 2 * * *", "keep_last": 3}

    def update_payload(self, fx, obj, seq):
        return {"keep_last": 5 + seq % 7, "schedule": "0 4 * * 1"}


class TestSnapshotApi(ApiTestCase):
    viewset = SnapshotViewSet
    basename = "backup-snapshot"
    roles = {**READ, "create": Role.ADMIN, "destroy": Role.ADMIN}
    success = {"destroy": 202}

    def make(self, fx, seq):
        return snapshot_in(fx, seq)

    def create_payload(self, fx, seq):
        with fx.scope():
            site = website_in(fx, f"c{seq}", node=backup_node_in(fx))
        return {"repository": str(repo_in(fx).pk), "resource_kind": "website", "resource_id": str(site.pk)}


class TestRestoreApi(ApiTestCase):
    viewset = RestoreViewSet
    basename = "backup-restore"
    roles = READ

    def make(self, fx, seq):
        return services.restore_create(snapshot=snapshot_in(fx, seq))


class TestDrillApi(ApiTestCase):
    viewset = DrillViewSet
    basename = "backup-drill"
    roles = {**READ, "create": Role.ADMIN}

    def make(self, fx, seq):
        policy = services.policy_create(tenant=fx.tenant, name=f"d{seq}", repository=repo_in(fx))
        return services.drill_start(policy=policy)

    def create_payload(self, fx, seq):
        with fx.scope():
            policy = services.policy_create(tenant=fx.tenant, name=f"dc{seq}", repository=repo_in(fx))
        return {"policy": str(policy.pk)}


@pytest.mark.django_db
def test_the_repository_password_is_in_no_answer_audit_record_or_job_payload(tenant_a):
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    node = backup_node_in(tenant_a)
    created = admin.post(reverse("backup-repository-list"), {"name": "vault", "node": str(node.pk)}, format="json")
    assert created.status_code == 201, created.content
    repo = BackupRepository.all_tenants.get(pk=created.json()["id"])
    secret = crypto.decrypt(repo.password_encrypted)
    assert len(secret) >= 40 and secret not in repo.password_encrypted
    texts = [created.content.decode(), admin.get(reverse("backup-repository-list")).content.decode(),
             admin.get(reverse("backup-repository-detail", kwargs={"pk": repo.pk})).content.decode()]  # fmt: skip
    texts += [json.dumps(e.changes) + json.dumps(e.metadata if hasattr(e, "metadata") else {})
              for e in AuditEvent.objects.filter(tenant=tenant_a.tenant)]  # fmt: skip
    texts += [json.dumps(j.payload) for j in Job.all_tenants.filter(tenant=tenant_a.tenant)]
    assert Job.all_tenants.filter(tenant=tenant_a.tenant, type="backup.repository.init").exists()
    for text in texts:
        assert secret not in text and "password_encrypted" not in text


@pytest.mark.django_db
def test_export_needs_re_authentication_and_admin(tenant_a):
    repo = repo_in(tenant_a)
    url = reverse("backup-repository-export-password", kwargs={"pk": repo.pk})
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    assert member.post(url, {"password": PASSWORD}, format="json").status_code == 403
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    assert admin.post(url, {}, format="json").status_code == 400
    assert admin.post(url, {"password": "wrong-one"}, format="json").status_code == 400
    good = admin.post(url, {"password": PASSWORD}, format="json")
    assert good.status_code == 200, good.content
    assert good.json()["password"] == crypto.decrypt(BackupRepository.all_tenants.get(pk=repo.pk).password_encrypted)
    event = AuditEvent.objects.filter(action="backup.repository.export_password").get()
    assert good.json()["password"] not in json.dumps(event.changes)


@pytest.mark.django_db
def test_a_restore_cannot_target_another_tenants_resource(tenant_a, tenant_b):
    snap = snapshot_in(tenant_a, 901)
    with tenant_b.scope():
        foreign = website_in(tenant_b, 902, node=backup_node_in(tenant_b, "web-b"))
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    url = reverse("backup-snapshot-restore", kwargs={"pk": snap.pk})
    response = admin.post(url, {"target": str(foreign.pk)}, format="json")
    assert response.status_code == 400, response.content
    assert not Restore.all_tenants.exists()
    # B cannot see A's snapshot, nor download from it.
    other = client_for(tenant_b.users[Role.OWNER], tenant_b.tenant)
    download = reverse("backup-snapshot-download", kwargs={"pk": snap.pk}) + "?path=public/index.html"
    assert other.get(download).status_code == 404
    assert other.get(reverse("backup-snapshot-list") + f"?resource={snap.resource_id}").json()["count"] == 0


@pytest.mark.django_db
def test_bad_input_is_a_400(tenant_a):
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    repo = repo_in(tenant_a)
    policies = reverse("backup-policy-list")
    for body in ({"name": "x", "repository": str(repo.pk), "schedule": "every night"},
                 {"name": "y", "repository": str(repo.pk), "resources": ["website:not-a-uuid"]},
                 {"name": "z", "repository": str(repo.pk), "resources": ["printer:1"]},
                 {"name": "w", "repository": str(repo.pk), "keep_last": 0}):  # fmt: skip
        assert admin.post(policies, body, format="json").status_code == 400, body
    listing = reverse("backup-snapshot-list") + "?resource=nope"
    assert admin.get(listing).status_code == 400
    node_without_role = backup_node_in(tenant_a, "plain")
    with tenant_a.scope():
        type(node_without_role).objects.filter(pk=node_without_role.pk).update(roles=["web"])
    body = {"name": "other", "node": str(node_without_role.pk)}
    assert admin.post(reverse("backup-repository-list"), body, format="json").status_code == 400


@pytest.mark.django_db
def test_the_tick_runs_due_policies_drills_and_checks(tenant_a):
    from datetime import timedelta

    from django.utils import timezone

    from apps.backups.models import BackupPolicy, Drill, RepoStatus

    repo = repo_in(tenant_a)
    BackupRepository.all_tenants.filter(pk=repo.pk).update(status=RepoStatus.ACTIVE)
    with tenant_a.scope():
        site = website_in(tenant_a, 990, node=backup_node_in(tenant_a))
        due = services.policy_create(tenant=tenant_a.tenant, name="due", repository=repo, schedule="*/5 * * * *",
                                     resources=[f"website:{site.pk}"])  # fmt: skip
        later = services.policy_create(tenant=tenant_a.tenant, name="later", repository=repo, schedule="0 3 1 1 *",
                                       resources=[f"website:{site.pk}"], drill_interval_days=0)  # fmt: skip
    long_ago = timezone.now() - timedelta(days=8)
    BackupPolicy.all_tenants.filter(pk__in=[due.pk, later.pk]).update(last_run_at=timezone.now() - timedelta(minutes=6),
                                                                      created_at=long_ago)  # fmt: skip
    BackupPolicy.all_tenants.filter(pk=later.pk).update(last_run_at=timezone.now())
    result = services.due_policies()
    assert result["ran"] == 1 and result["drills"] == 1 and result["checks"] == 1, result
    assert Snapshot.all_tenants.filter(policy=due, reason="scheduled").count() == 1
    assert not Snapshot.all_tenants.filter(policy=later).exists()
    assert Drill.all_tenants.filter(policy=due).count() == 1
    assert Job.all_tenants.filter(type="backup.repository.check").count() == 1
    again = services.due_policies()  # nothing is due twice
    assert again["ran"] == 0 and again["drills"] == 0 and again["checks"] == 0, again
