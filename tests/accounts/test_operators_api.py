"""Platform operators (`is_staff`) through the API: their cross-tenant powers need the admin's second
factor (a session whose login passed TOTP), and every act of theirs is audited as an operator's."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from apps.accounts.models import AuthToken
from apps.audit.models import AuditEvent
from apps.jobs.models import Job, JobStatus
from apps.nodes.models import Node
from apps.tenancy.models import Membership
from apps.tenancy.roles import Role
from tests.conftest import PASSWORD, client_for, make_user
from tests.kernel.test_jobs import make_job
from tests.pods_support import node_in
from tests.security_helpers import LOGIN, LOGIN_MFA, code, enable_2fa, next_step

OPS_READS = [
    "/api/v1/ops/provisioning/",
    "/api/v1/ops/servers/",
    "/api/v1/ops/overview",
    "/api/v1/ops/platform-overview",
]


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # login throttles
    yield
    cache.clear()


def login(email: str, secret: str | None = None, recovery: str | None = None) -> tuple[APIClient, AuthToken]:
    """A session through the real login (and its 2FA step when the account has 2FA)."""
    client = APIClient()
    body = client.post(LOGIN, {"email": email, "password": PASSWORD}, format="json").json()
    if body.get("mfa_required"):
        answer = recovery if recovery is not None else code(secret)
        body = client.post(LOGIN_MFA, {"mfa_token": body["mfa_token"], "code": answer}, format="json").json()
    key = body["key"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    from apps.accounts.models import hash_token

    return client, AuthToken.objects.get(key_hash=hash_token(key))


@pytest.fixture
def platform(tenant_a, tenant_b):
    """Tenant B's failed job with a payload, and its node; an operator who is a member of tenant A."""
    job = make_job(tenant_b, key="b-secret", status=JobStatus.FAILED, attempts=1, payload={"password": "hunter2"})
    own_job = make_job(tenant_a, key="a-own", status=JobStatus.FAILED, attempts=1)
    node = node_in(tenant_b, "b-node.example.net")
    operator = make_user("operator@platform.test", is_staff=True)
    Membership.objects.create(tenant=tenant_a.tenant, user=operator, role=Role.ADMIN)
    return job, own_job, node, operator


def _state(job, node):
    return (Job.all_tenants.get(pk=job.pk).status, Node.all_tenants.get(pk=node.pk).status)


def test_an_operator_with_the_password_alone_is_a_plain_user(platform, tenant_a, tenant_b):
    job, own_job, node, operator = platform
    client, session = login(operator.email)  # no 2FA on the account: the password alone
    assert session.method == "password"
    before = _state(job, node)
    # Only their own tenant (they belong to A): B's jobs, payloads and nodes are out of reach.
    listed = client.get("/api/v1/ops/provisioning/")
    assert listed.status_code == 200
    assert {row["id"] for row in listed.json()["results"]} == {str(own_job.pk)}
    assert client.get(reverse("job-detail", args=[job.pk])).status_code == 404
    assert client.post(reverse("job-retry", args=[job.pk])).status_code == 404
    assert client.get(f"/api/v1/ops/servers/{node.pk}/").status_code == 404
    assert client.patch(f"/api/v1/ops/servers/{node.pk}/", {"status": "maintenance"}, format="json").status_code == 404
    assert client.get("/api/v1/ops/platform-overview").json()["scope"] != "platform"
    assert _state(job, node) == before
    assert not AuditEvent.objects.filter(via="operator").exists()


def test_an_operator_in_no_tenant_with_the_password_alone_reaches_nothing(platform, tenant_b):
    job, _own, node, operator = platform
    Membership.objects.filter(user=operator).delete()
    client, _session = login(operator.email)
    for url in OPS_READS:
        assert client.get(url).status_code == 403, url
    assert client.get(reverse("job-detail", args=[job.pk])).status_code == 403
    assert client.post(reverse("job-retry", args=[job.pk])).status_code == 403
    assert client.patch(f"/api/v1/ops/servers/{node.pk}/", {"status": "maintenance"}, format="json").status_code == 403
    assert _state(job, node) == (JobStatus.FAILED, "active")


def test_an_operator_whose_login_passed_totp_acts_platform_wide_audited_as_operator(platform, tenant_a, tenant_b):
    job, own_job, node, operator = platform
    secret, _codes = enable_2fa(operator)
    client, session = login(operator.email, secret)
    assert session.method == "totp"

    listed = client.get("/api/v1/ops/provisioning/")
    assert {row["id"] for row in listed.json()["results"]} == {str(job.pk), str(own_job.pk)}
    assert client.get(reverse("job-detail", args=[job.pk])).json()["payload"]["password"] == "hunter2"
    assert client.post(reverse("job-retry", args=[job.pk])).status_code == 200
    patched = client.patch(f"/api/v1/ops/servers/{node.pk}/", {"status": "maintenance"}, format="json")
    assert patched.status_code == 200 and patched.json()["status"] == "maintenance"
    assert client.get("/api/v1/ops/platform-overview").json()["scope"] == "platform"

    ops = AuditEvent.objects.filter(via="operator", actor=operator)
    retry = ops.get(action="job.retry")
    assert (retry.tenant_id, retry.object_id) == (tenant_b.tenant.pk, str(job.pk))
    update = ops.get(action="node.update")
    assert update.tenant_id == tenant_b.tenant.pk and update.changes["status"] == ["active", "maintenance"]
    # Reads across tenants are audited too, the object's tenant named when there is one.
    detail = ops.get(action="operator.read", object_id=str(job.pk))
    assert detail.tenant_id == tenant_b.tenant.pk and detail.object_type == "jobs.job"
    assert ops.filter(action="operator.read", object_id="", object_type="jobs.job").count() == 1
    # What a tenant's own admin does is still not an operator's act.
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    assert admin.post(reverse("job-retry", args=[own_job.pk])).status_code == 200
    assert AuditEvent.objects.get(action="job.retry", object_id=str(own_job.pk)).via == "api"


def test_a_recovery_code_or_a_removed_device_gives_no_platform_reach(platform, tenant_b):
    job, _own, _node, operator = platform
    Membership.objects.filter(user=operator).delete()
    secret, codes = enable_2fa(operator)
    client, session = login(operator.email, recovery=codes[0])
    assert session.method == "recovery_code"  # the admin takes TOTP only, so does the API
    assert client.get(reverse("job-detail", args=[job.pk])).status_code == 403

    next_step(operator)
    client, session = login(operator.email, secret)
    assert client.get(reverse("job-detail", args=[job.pk])).status_code == 200
    TOTPDevice.objects.filter(user=operator).delete()  # e.g. turned off by another of their sessions
    assert client.get(reverse("job-detail", args=[job.pk])).status_code == 403


def test_a_tenant_bound_token_of_an_operator_never_reaches_the_platform(platform, tenant_a, tenant_b):
    from tests.security.test_security_tokens import bearer, token_for

    job, _own, _node, operator = platform
    enable_2fa(operator)
    _token, raw = token_for(operator, tenant_a, role=Role.ADMIN)
    assert bearer(raw).get(reverse("job-detail", args=[job.pk])).status_code == 404


def test_without_the_admins_2fa_requirement_the_password_is_enough(platform, settings):
    """MPANEL_ADMIN_REQUIRE_2FA=0 lets operators into the admin with a password: the API follows it."""
    settings.MPANEL_ADMIN_REQUIRE_2FA = False
    job, _own, _node, operator = platform
    client, _session = login(operator.email)
    assert client.get(reverse("job-detail", args=[job.pk])).status_code == 200
    assert AuditEvent.objects.get(action="operator.read", object_id=str(job.pk)).via == "operator"


def test_platform_reach_needs_a_voucher_and_every_voucher_agrees(platform, settings, monkeypatch):
    """Tenancy asks ``OPERATOR_VOUCHERS`` (accounts registers its TOTP rule there): with none
    registered nobody holds platform powers (fail-closed), and one voucher's no is enough."""
    from apps.accounts.operators import is_verified_operator
    from apps.tenancy import resolution

    assert list(resolution.OPERATOR_VOUCHERS) == [is_verified_operator]
    settings.MPANEL_ADMIN_REQUIRE_2FA = False
    job, _own, _node, operator = platform
    client, _session = login(operator.email)
    assert client.get(reverse("job-detail", args=[job.pk])).status_code == 200

    # Without the platform view the operator is tenant A's member: tenant B's job is not found.
    monkeypatch.setattr(resolution, "OPERATOR_VOUCHERS", resolution.Registry("operator voucher"))
    assert client.get(reverse("job-detail", args=[job.pk])).status_code == 404
    resolution.OPERATOR_VOUCHERS.register("yes")(lambda user, auth: True)
    resolution.OPERATOR_VOUCHERS.register("no")(lambda user, auth: False)
    assert client.get(reverse("job-detail", args=[job.pk])).status_code == 404
