"""/api/v1/guardian: findings from checks run as jobs; a rescan resolves what is fixed and never
duplicates what is still there."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.jobs.models import Job, JobStatus
from apps.security import guardian, services
from apps.security.api import GuardianViewSet
from apps.security.models import ApiToken, GuardianFinding, SecurityPolicy
from apps.tenancy.roles import ORDERED, Role
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for, wait_for

URL = "/api/v1/guardian/"


def scan(fx):
    with fx.scope():
        return guardian.scan(tenant=fx.tenant)


def findings(fx, **filters):
    with fx.scope():
        return list(GuardianFinding.objects.filter(**filters).order_by("check_name", "resource_repr"))


def give_2fa(*users):
    for user in users:
        TOTPDevice.objects.create(user=user, name="t", confirmed=True)


class TestGuardianApi(ApiTestCase):
    viewset = GuardianViewSet
    basename = "guardian-finding"
    roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER}

    def make(self, fx, seq):
        return GuardianFinding.objects.create(
            tenant=fx.tenant,
            check_name="tokens_without_expiry",
            severity="medium",
            title="t",
            resource_type="security.apitoken",
            resource_id=f"r{seq}",
        )


@pytest.mark.django_db
class TestGuardianChecks:
    def test_owner_without_2fa_then_fixed_then_rescan_resolves(self, tenant_a):
        summary = scan(tenant_a)
        owners = findings(tenant_a, check_name="owners_without_2fa")
        assert [f.resource_repr for f in owners] == [tenant_a.owner.email]
        assert owners[0].severity == "high" and owners[0].status == "open"
        assert summary["opened"] >= 1
        # Scanning again duplicates nothing and moves last_seen.
        scan(tenant_a)
        again = findings(tenant_a, check_name="owners_without_2fa")
        assert len(again) == 1 and again[0].last_seen_at > owners[0].last_seen_at
        assert again[0].first_seen_at == owners[0].first_seen_at
        give_2fa(tenant_a.owner)
        assert scan(tenant_a)["resolved"] == 1
        resolved = findings(tenant_a, check_name="owners_without_2fa")
        assert len(resolved) == 1 and resolved[0].status == "resolved" and resolved[0].resolved_at

    def test_members_without_2fa_only_when_the_policy_requires_it(self, tenant_a):
        scan(tenant_a)
        assert findings(tenant_a, check_name="members_without_2fa") == []
        with tenant_a.scope():
            SecurityPolicy.objects.create(tenant=tenant_a.tenant, require_2fa=True)
        give_2fa(tenant_a.owner, tenant_a.users[Role.ADMIN])
        scan(tenant_a)
        flagged = {f.resource_repr for f in findings(tenant_a, check_name="members_without_2fa")}
        assert flagged == {tenant_a.users[r].email for r in (Role.BILLING, Role.MEMBER, Role.VIEWER)}
        with tenant_a.scope():
            SecurityPolicy.objects.update(require_2fa=False)
        scan(tenant_a)
        assert all(f.status == "resolved" for f in findings(tenant_a, check_name="members_without_2fa"))

    def test_tokens_without_expiry_and_unused(self, tenant_a, tenant_b):
        with tenant_a.scope():
            forever, _ = services.token_create(
                tenant=tenant_a.tenant, actor=tenant_a.owner, actor_role=Role.OWNER, name="f"
            )
            expiring, _ = services.token_create(
                tenant=tenant_a.tenant,
                actor=tenant_a.owner,
                actor_role=Role.OWNER,
                name="e",
                expires_at=timezone.now() + timedelta(days=300),
            )
        with tenant_b.scope():
            services.token_create(tenant=tenant_b.tenant, actor=tenant_b.owner, actor_role=Role.OWNER, name="b")
        old = timezone.now() - timedelta(days=91)
        ApiToken.all_tenants.filter(pk=expiring.pk).update(created_at=old, last_used_at=old)
        scan(tenant_a)
        assert [f.resource_id for f in findings(tenant_a, check_name="tokens_without_expiry")] == [str(forever.pk)]
        assert [f.resource_id for f in findings(tenant_a, check_name="tokens_unused")] == [str(expiring.pk)]
        # Revoking the one and using the other fixes both.
        with tenant_a.scope():
            services.token_revoke(token=forever, actor=tenant_a.owner)
        ApiToken.all_tenants.filter(pk=expiring.pk).update(last_used_at=timezone.now())
        scan(tenant_a)
        for name in ("tokens_without_expiry", "tokens_unused"):
            assert [f.status for f in findings(tenant_a, check_name=name)] == ["resolved"]
        assert findings(tenant_b) == []  # a scan sees only its own tenant
        assert len(findings(tenant_a)) == len(findings(tenant_a, check_name__in=guardian.CHECKS.keys()))

    def test_acknowledged_stays_acknowledged_and_manual_resolve_reopens_if_still_there(self, tenant_a):
        scan(tenant_a)
        finding = findings(tenant_a, check_name="owners_without_2fa")[0]
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        ack = admin.post(f"{URL}{finding.pk}/acknowledge/")
        assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
        assert admin.post(f"{URL}{finding.pk}/acknowledge/").status_code == 409
        scan(tenant_a)
        assert [f.status for f in findings(tenant_a, check_name="owners_without_2fa")] == ["acknowledged"]
        assert admin.post(f"{URL}{finding.pk}/resolve/").json()["status"] == "resolved"
        assert admin.post(f"{URL}{finding.pk}/resolve/").status_code == 409
        scan(tenant_a)  # still there: a new open finding, the resolved one kept as history
        statuses = sorted(f.status for f in findings(tenant_a, check_name="owners_without_2fa"))
        assert statuses == ["open", "resolved"]


@pytest.mark.django_db
class TestGuardianApiRoles:
    def test_scan_runs_as_a_job_and_roles(self, tenant_a, tenant_b, django_capture_on_commit_callbacks):
        for role in ORDERED:
            client = client_for(tenant_a.users[role], tenant_a.tenant)
            assert client.get(f"{URL}checks/").status_code == (200 if role.includes(Role.MEMBER) else 403)
            with django_capture_on_commit_callbacks(execute=True):
                response = client.post(f"{URL}scan/")
            assert response.status_code == (202 if role.includes(Role.ADMIN) else 403), role
        with tenant_a.scope():
            jobs = list(Job.objects.filter(type="guardian.scan"))
        assert len(jobs) == 2 and all(j.status == JobStatus.SUCCEEDED for j in jobs), [j.last_error for j in jobs]
        member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        listed = member.get(URL, {"check": "owners_without_2fa", "status": "open"}).json()["results"]
        assert len(listed) == 1 and listed[0]["resource_repr"] == tenant_a.owner.email
        names = {c["name"] for c in member.get(f"{URL}checks/").json()}
        assert {"members_without_2fa", "owners_without_2fa", "tokens_without_expiry", "tokens_unused"} <= names
        finding_id = listed[0]["id"]
        assert member.post(f"{URL}{finding_id}/resolve/").status_code == 403
        other = client_for(tenant_b.owner, tenant_b.tenant)
        assert other.get(f"{URL}{finding_id}/").status_code == 404
        assert other.post(f"{URL}{finding_id}/resolve/").status_code == 404
        assert client_for().get(URL).status_code == 401
        assert member.get(URL, {"status": "bogus"}).status_code == 400


@pytest.mark.worker
def test_scan_job_on_a_real_worker(celery_worker, tenant_a):
    """The scan requested through the API runs on a real Celery worker and its findings appear."""
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = client.post(f"{URL}scan/")
    assert response.status_code == 202
    job_id = response.json()["job"]
    wait_for(lambda: Job.all_tenants.get(pk=job_id).status == JobStatus.SUCCEEDED, timeout=30, message="scan job")
    listed = client.get(URL, {"check": "owners_without_2fa"}).json()["results"]
    assert [f["resource_repr"] for f in listed] == [tenant_a.owner.email]
