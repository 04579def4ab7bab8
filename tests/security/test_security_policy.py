"""/api/v1/security/policy and /security/events (ADMIN+); the policy enforced on every request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import AuthToken
from apps.security import events as security_events
from apps.security.api import SecurityEventViewSet, SecurityPolicyViewSet
from apps.security.models import SecurityEvent, SecurityPolicy, SessionTenantUse
from apps.security.tasks import purge
from apps.tenancy.roles import ORDERED, Role
from tests.api_mixin import ApiTestCase
from tests.conftest import PASSWORD, client_for, make_user
from tests.security_helpers import LOGIN, enable_2fa

POLICY = "/api/v1/security/policy"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def set_policy(fx, **fields):
    with fx.scope():
        policy, _ = SecurityPolicy.objects.update_or_create(tenant=fx.tenant, defaults=fields)
    return policy


class TestSecurityEventApi(ApiTestCase):
    viewset = SecurityEventViewSet
    basename = "security-event"
    roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN}

    def make(self, fx, seq):
        return SecurityEvent.objects.create(tenant=fx.tenant, user=fx.owner, email=fx.owner.email, type="login.success")


@pytest.mark.django_db
class TestSecurityEvents:
    def test_account_events_are_the_users_own_and_reach_no_tenant(self, tenant_a, tenant_b):
        # Was: a login was copied to every tenant of the user. A login is no act in any tenant: only the
        # user sees it (/security/me/events); tenants see what happens in them (tokens, policy, members).
        member = tenant_a.users[Role.MEMBER]
        client_for().post(LOGIN, {"email": member.email, "password": "wrong-password!"}, format="json")
        client_for().post(LOGIN, {"email": member.email, "password": PASSWORD}, format="json")
        for fx in (tenant_a, tenant_b):
            admin = client_for(fx.users[Role.ADMIN], fx.tenant)
            assert admin.get("/api/v1/security/events/").json()["count"] == 0
        mine = client_for(member).get("/api/v1/security/me/events/").json()["results"]
        assert [r["type"] for r in mine] == ["login.success", "login.failure"]
        assert mine[1]["reason"] == "bad_password" and mine[1]["ip"] == "127.0.0.1"

    def test_filters_by_type_user_and_time(self, tenant_a):
        admin = client_for(tenant_a.owner, tenant_a.tenant)
        created = admin.post("/api/v1/security/tokens/", {"name": "ci"}, format="json")
        assert created.status_code == 201, created.content
        url = "/api/v1/security/events/"
        assert admin.get(url, {"type": "token.created"}).json()["count"] == 1
        assert admin.get(url, {"type_prefix": "token."}).json()["count"] == 1
        assert admin.get(url, {"user": str(tenant_a.owner.pk)}).json()["count"] == 1
        assert admin.get(url, {"type": "login.success"}).json()["count"] == 0
        future = (timezone.now() + timedelta(hours=1)).isoformat()
        assert admin.get(url, {"created_after": future}).json()["count"] == 0
        assert admin.get(url, {"created_before": future}).json()["count"] == 1
        for bad in ({"user": "nope"}, {"created_after": "yesterday"}, {"type": "nope"}):
            assert admin.get(url, bad).status_code == 400, bad

    def test_retention_purges_per_policy(self, tenant_a, tenant_b):
        set_policy(tenant_a, event_retention_days=7)
        old = timezone.now() - timedelta(days=10)
        for fx in (tenant_a, tenant_b):
            SecurityEvent.objects.create(tenant=fx.tenant, type="login.success", created_at=old)
            SecurityEvent.objects.create(tenant=fx.tenant, type="login.success")
        purge()
        assert SecurityEvent.objects.filter(tenant=tenant_a.tenant).count() == 1
        assert SecurityEvent.objects.filter(tenant=tenant_b.tenant).count() == 2  # default retention 365 days
        assert security_events.purge_expired() == 0


@pytest.mark.django_db
class TestPolicyApi:
    covers = [SecurityPolicyViewSet]

    def test_role_matrix(self, tenant_a, tenant_b):
        for role in ORDERED:
            client = client_for(tenant_a.users[role], tenant_a.tenant)
            expected = 200 if role.includes(Role.ADMIN) else 403
            assert client.get(POLICY).status_code == expected, role
            assert client.put(POLICY, {"min_password_length": 12}, format="json").status_code == expected, role
        assert client_for().get(POLICY).status_code == 401
        # Another tenant's admin only ever sees and changes its own tenant's policy.
        client_for(tenant_b.owner, tenant_b.tenant).put(POLICY, {"min_password_length": 20}, format="json")
        assert client_for(tenant_a.owner, tenant_a.tenant).get(POLICY).json()["min_password_length"] == 12
        assert reverse("security-policy") == "/api/v1/security/policy"

    def test_defaults_then_put_validates_everything(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        body = client.get(POLICY).json()
        assert body["require_2fa"] is False and body["ip_allowlist"] == [] and body["min_password_length"] == 10
        for bad in (
            {"ip_allowlist": ["10.0.0.0/33"]},
            {"ip_allowlist": ["not-an-ip"]},
            {"ip_allowlist": "10.0.0.0/8"},
            {"min_password_length": 4},
            {"min_password_length": "many"},
            {"session_idle_timeout_minutes": 0},
            {"session_max_lifetime_hours": -1},
            {"token_max_lifetime_days": 0},
            {"event_retention_days": 0},
            {"require_2fa": "perhaps"},
        ):
            response = client.put(POLICY, bad, format="json")
            assert response.status_code == 400, (bad, response.content)
            assert set(response.json()) == set(bad), response.json()
        assert not SecurityPolicy.all_tenants.exists()
        ok = client.put(
            POLICY,
            {
                "ip_allowlist": ["127.0.0.1", "10.0.0.7/8"],
                "token_max_lifetime_days": 90,
                "session_idle_timeout_minutes": 30,
            },
            format="json",
        )
        assert ok.status_code == 200, ok.content
        assert ok.json()["ip_allowlist"] == ["127.0.0.1/32", "10.0.0.0/8"]
        assert client.get(POLICY).json()["token_max_lifetime_days"] == 90
        event = SecurityEvent.objects.get(type="policy.changed", tenant=tenant_a.tenant)
        assert event.data["changes"]["token_max_lifetime_days"] == [None, 90]

    def test_put_refuses_to_lock_the_admin_out(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        response = client.put(POLICY, {"ip_allowlist": ["192.0.2.0/24"]}, format="json")
        assert response.status_code == 400 and "ip_allowlist" in response.json()
        response = client.put(POLICY, {"require_2fa": True}, format="json")
        assert response.status_code == 400 and "require_2fa" in response.json()
        enable_2fa(tenant_a.owner)
        assert client.put(POLICY, {"require_2fa": True}, format="json").status_code == 200

    def test_put_is_audited(self, tenant_a):
        from apps.audit.models import AuditEvent

        response = client_for(tenant_a.owner, tenant_a.tenant).put(POLICY, {"min_password_length": 14}, format="json")
        assert response.status_code == 200, response.content
        event = AuditEvent.objects.get(action="security.policy_update")
        assert event.tenant_id == tenant_a.tenant.pk and event.changes["min_password_length"] == [None, 14]


@pytest.mark.django_db
class TestPolicyEnforcement:
    def test_required_2fa_limits_members_without_it_to_security_me(self, tenant_a):
        set_policy(tenant_a, require_2fa=True)
        member = tenant_a.users[Role.MEMBER]
        client = client_for(member, tenant_a.tenant)
        response = client.get("/api/v1/customers/")
        assert response.status_code == 403 and response.json()["code"] == "mfa_enrollment_required"
        assert client.get("/api/v1/security/me/").json()["mfa_required_by_tenants"] == [str(tenant_a.tenant.pk)]
        enable_2fa(member)
        assert client.get("/api/v1/customers/").status_code == 200
        # ...also for a token: its creator must have 2FA too.
        other = tenant_a.users[Role.BILLING]
        created = client_for(other, tenant_a.tenant).post("/api/v1/security/tokens/", {"name": "t"}, format="json")
        assert created.status_code == 403

    def test_tenant_settings_obey_the_policy_too(self, tenant_a):
        set_policy(tenant_a, require_2fa=True)
        admin = client_for(tenant_a.users[Role.ADMIN])
        url = f"/api/v1/tenants/{tenant_a.tenant.pk}/"
        response = admin.patch(url, {"name": "Renamed"}, format="json")
        assert response.status_code == 403 and response.json()["code"] == "mfa_enrollment_required"
        enable_2fa(tenant_a.users[Role.ADMIN])
        assert admin.patch(url, {"name": "Renamed"}, format="json").status_code == 200
        set_policy(tenant_a, ip_allowlist=["10.0.0.0/8"])
        assert admin.patch(url, {"name": "Again"}, format="json").status_code == 403

    def test_login_asks_for_the_code_when_the_user_has_2fa(self, tenant_a):
        set_policy(tenant_a, require_2fa=True)
        member = tenant_a.users[Role.MEMBER]
        enable_2fa(member)
        body = client_for().post(LOGIN, {"email": member.email, "password": PASSWORD}, format="json").json()
        assert body["mfa_required"] is True

    def test_ip_allowlist_applies_to_every_request_in_the_tenant(self, tenant_a, tenant_b):
        set_policy(tenant_a, ip_allowlist=["10.0.0.0/8"])
        client = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        response = client.get("/api/v1/customers/")
        assert response.status_code == 403 and response.json()["code"] == "ip_not_allowed"
        assert client.get("/api/v1/customers/", REMOTE_ADDR="10.9.8.7").status_code == 200
        assert client_for(tenant_b.owner, tenant_b.tenant).get("/api/v1/customers/").status_code == 200
        # The account's own security stays reachable.
        assert client.get("/api/v1/security/me/").status_code == 200

    def test_session_idle_timeout_and_absolute_lifetime(self, tenant_a):
        user = tenant_a.users[Role.MEMBER]
        set_policy(tenant_a, session_idle_timeout_minutes=30, session_max_lifetime_hours=8)
        idle = client_for(user, tenant_a.tenant)
        token = AuthToken.objects.filter(user=user).latest("created_at")
        assert idle.get("/api/v1/customers/").status_code == 200
        SessionTenantUse.objects.filter(session=token).update(last_used_at=timezone.now() - timedelta(minutes=31))
        refused = idle.get("/api/v1/customers/")
        assert refused.status_code == 401 and refused.json()["code"] == "tenant_session_expired"
        # Was: refused everywhere. A tenant's limits govern the session in that tenant only; the account's
        # own routes stay open, and the refused request did not restart the tenant's clock.
        assert idle.get("/api/v1/security/me/").status_code == 200
        assert idle.get("/api/v1/customers/").status_code == 401

        old = client_for(user, tenant_a.tenant)
        token = AuthToken.objects.filter(user=user).latest("created_at")
        AuthToken.objects.filter(pk=token.pk).update(created_at=timezone.now() - timedelta(hours=9))
        assert old.get("/api/v1/customers/").status_code == 401
        assert client_for(user, tenant_a.tenant).get("/api/v1/customers/").status_code == 200
        # Users of other tenants are not affected.
        outsider = make_user("outsider@example.com")
        fresh = client_for(outsider)
        AuthToken.objects.filter(user=outsider).update(last_used_at=timezone.now() - timedelta(minutes=31))
        assert fresh.get("/api/v1/security/me/").status_code == 200

    def test_min_password_length_applies_to_every_password_change(self, tenant_a):
        set_policy(tenant_a, min_password_length=20)
        user = tenant_a.users[Role.VIEWER]
        client = client_for(user, tenant_a.tenant)
        short = client.post(
            "/api/v1/security/me/password/",
            {"old_password": PASSWORD, "new_password": "Quite-good-pass-1"},
            format="json",
        )
        assert short.status_code == 400 and "20" in str(short.json()["new_password"])
        via_rest_auth = client.post(
            "/api/v1/auth/password/change/",
            {"old_password": PASSWORD, "new_password1": "Quite-good-pass-1", "new_password2": "Quite-good-pass-1"},
            format="json",
        )
        assert via_rest_auth.status_code == 400
        long_enough = "A-much-longer-passphrase-2026"
        ok = client.post(
            "/api/v1/security/me/password/", {"old_password": PASSWORD, "new_password": long_enough}, format="json"
        )
        assert ok.status_code == 200


@pytest.mark.django_db
def test_browsable_api_renders_every_security_route(tenant_a):
    client = client_for(tenant_a.owner, tenant_a.tenant)
    for url in (
        "/api/v1/security/me/",
        "/api/v1/security/me/sessions/",
        "/api/v1/security/me/events/",
        "/api/v1/security/tokens/",
        "/api/v1/security/events/",
        POLICY,
        "/api/v1/security/shield/policies/",
        "/api/v1/security/shield/events/",
        "/api/v1/security/shield/events/counts/",
        "/api/v1/guardian/",
        "/api/v1/guardian/checks/",
    ):
        response = client.get(url, HTTP_ACCEPT="text/html")
        assert response.status_code == 200, url
        assert b"<html" in response.content
