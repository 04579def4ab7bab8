"""/api/v1/security/tokens: personal API tokens `mp_…` (BILLING+), their scope and revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.customers.models import Customer
from apps.security import services
from apps.security.api import ApiTokenViewSet
from apps.security.models import ApiToken, SecurityEvent, sha256
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Membership
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for

URL = "/api/v1/security/tokens/"


def token_for(user, fx, role=None, **kwargs):
    """A token of ``user`` in ``fx.tenant``; returns (token, raw)."""
    actor_role = Role(Membership.objects.get(user=user, tenant=fx.tenant).role)
    with fx.scope():
        return services.token_create(
            tenant=fx.tenant, actor=user, actor_role=actor_role, name="t", role=role or actor_role, **kwargs
        )


def bearer(raw, tenant=None, **extra):
    client = client_for(None, tenant)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}", **extra)
    return client


class TestApiTokenApi(ApiTestCase):
    viewset = ApiTokenViewSet
    basename = "security-token"
    roles = {"list": Role.BILLING, "retrieve": Role.BILLING, "create": Role.BILLING, "destroy": Role.BILLING}

    def make(self, fx, seq):
        token, _raw = services.token_create(
            tenant=fx.tenant, actor=fx.owner, actor_role=Role.OWNER, name=f"token {seq}", role=Role.VIEWER
        )
        return token

    def actor_for(self, fx, role, obj=None):
        # A BILLING member manages their own tokens: the object under test is the actor's own.
        if obj is not None:
            ApiToken.all_tenants.filter(pk=obj.pk).update(user=fx.users[role])
        return fx.users[role]

    def create_payload(self, fx, seq):
        return {"name": f"ci {seq}", "role": "VIEWER"}

    def test_idempotent_create_replays_first_answer(self, tenant_a):
        """Replays answer the same token, but never its secret again: it is shown once and not stored."""
        client = client_for(tenant_a.owner, tenant_a.tenant)
        payload = self.create_payload(tenant_a, 1)
        first = client.post(URL, payload, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
        second = client.post(URL, payload, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
        assert first.status_code == second.status_code == 201
        assert second["Idempotent-Replayed"] == "true"
        assert first.json()["token"].startswith("mp_") and second.json()["token"] is None
        assert {**first.json(), "token": None} == second.json()
        with tenant_a.scope():
            assert ApiToken.objects.count() == 1


@pytest.mark.django_db
class TestTokenRules:
    def test_created_once_stored_hashed_listed_without_secret(self, tenant_a):
        client = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
        created = client.post(URL, {"name": "deploy"}, format="json")
        assert created.status_code == 201, created.content
        raw = created.json()["token"]
        assert raw.startswith("mp_") and created.json()["role"] == "BILLING"
        with tenant_a.scope():
            token = ApiToken.objects.get()
        assert token.key_hash == sha256(raw) and raw not in token.key_hash and raw.startswith(token.prefix)
        listed = client.get(URL).json()["results"]
        assert listed[0]["prefix"] == token.prefix and "token" not in listed[0]
        assert raw not in str(client.get(URL).content)
        assert SecurityEvent.objects.filter(type="token.created", tenant=tenant_a.tenant).exists()

    def test_role_never_above_the_creator(self, tenant_a):
        client = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
        for role in ("ADMIN", "OWNER"):
            response = client.post(URL, {"name": "x", "role": role}, format="json")
            assert response.status_code == 400 and "role" in response.json()
        assert client.post(URL, {"name": "x", "role": "MEMBER"}, format="json").status_code == 201

    def test_bad_input_is_400(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        past = (timezone.now() - timedelta(days=1)).isoformat()
        for body in (
            {},
            {"name": ""},
            {"name": "x", "role": "ROOT"},
            {"name": "x", "expires_at": past},
            {"name": "x", "expires_at": "soon"},
            {"name": "x", "allowed_ips": ["10.0.0.0/33"]},
            {"name": "x", "allowed_ips": "10.0.0.1"},
        ):
            assert client.post(URL, body, format="json").status_code == 400, body

    def test_a_token_acts_in_its_tenant_with_its_role_and_ignores_the_header(self, tenant_a, tenant_b):
        _token, raw = token_for(tenant_a.owner, tenant_a, role=Role.MEMBER)
        with tenant_a.scope():
            Customer.objects.create(name="A's", email="a@example.com", currency="USD")
        client = bearer(raw, tenant_b.tenant)  # the header names another tenant: ignored
        listed = client.get("/api/v1/customers/")
        assert listed.status_code == 200 and [c["name"] for c in listed.json()["results"]] == ["A's"]
        # MEMBER cannot create customers, and cannot reach ADMIN+ APIs.
        assert (
            client.post("/api/v1/customers/", {"name": "N", "email": "n@example.com"}, format="json").status_code == 403
        )
        assert client.get("/api/v1/audit/").status_code == 403
        # Members are never a token's business, of any tenant (tests/accounts/test_token_reach.py walks every route).
        assert client.get(f"/api/v1/tenants/{tenant_b.tenant.pk}/members/").status_code == 403

    def test_a_token_never_reaches_account_security(self, tenant_a):
        _token, raw = token_for(tenant_a.owner, tenant_a)
        client = bearer(raw)
        assert client.get(URL).status_code == 403  # nor tokens, its own included
        assert client.post(URL, {"name": "minted"}, format="json").status_code == 403
        for url in ("/api/v1/security/me/", "/api/v1/security/me/sessions/", "/api/v1/auth/user/", "/api/v1/tenants/"):
            assert client.get(url).status_code == 403, url
        response = client.post(
            "/api/v1/auth/password/change/",
            {"old_password": "x", "new_password1": "Another-pass-12", "new_password2": "Another-pass-12"},
            format="json",
        )
        assert response.status_code == 403

    def test_revoked_and_expired_tokens_are_refused_at_once(self, tenant_a):
        token, raw = token_for(tenant_a.owner, tenant_a)
        client = bearer(raw)
        assert client.get("/api/v1/customers/").status_code == 200
        owner = client_for(tenant_a.owner, tenant_a.tenant)
        assert owner.delete(f"{URL}{token.pk}/").status_code == 204
        assert client.get("/api/v1/customers/").status_code == 401
        assert owner.delete(f"{URL}{token.pk}/").status_code == 409
        assert owner.get(f"{URL}{token.pk}/").json()["status"] == "revoked"
        assert SecurityEvent.objects.filter(type="token.revoked", tenant=tenant_a.tenant).exists()

        token2, raw2 = token_for(tenant_a.owner, tenant_a, expires_at=timezone.now() + timedelta(hours=1))
        assert bearer(raw2).get("/api/v1/customers/").status_code == 200
        ApiToken.all_tenants.filter(pk=token2.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert bearer(raw2).get("/api/v1/customers/").status_code == 401
        assert bearer("mp_not-a-token").get("/api/v1/customers/").status_code == 401

    def test_creator_losing_the_role_or_leaving_limits_or_ends_the_token(self, tenant_a):
        admin = tenant_a.users[Role.ADMIN]
        _token, raw = token_for(admin, tenant_a, role=Role.ADMIN)
        client = bearer(raw)
        assert client.get("/api/v1/audit/").status_code == 200
        membership = Membership.objects.get(user=admin, tenant=tenant_a.tenant)
        tenancy_services.member_change_role(membership=membership, actor_role=Role.OWNER, role=Role.MEMBER)
        assert client.get("/api/v1/audit/").status_code == 403  # effective role = min(MEMBER, ADMIN)
        assert client.get("/api/v1/customers/").status_code == 200
        tenancy_services.member_remove(membership=membership, actor=tenant_a.owner, actor_role=Role.OWNER)
        assert client.get("/api/v1/customers/").status_code == 401
        types = set(SecurityEvent.objects.filter(tenant=tenant_a.tenant).values_list("type", flat=True))
        assert {"member.role_changed", "member.removed"} <= types

    def test_deactivated_creator_ends_the_token(self, tenant_a):
        _token, raw = token_for(tenant_a.owner, tenant_a)
        tenant_a.owner.is_active = False
        tenant_a.owner.save()
        assert bearer(raw).get("/api/v1/customers/").status_code == 401

    def test_ip_allowlist_last_use_and_new_address_event(self, tenant_a):
        token, raw = token_for(tenant_a.owner, tenant_a, allowed_ips=["10.1.0.0/16"])
        assert bearer(raw, REMOTE_ADDR="10.2.0.1").get("/api/v1/customers/").status_code == 403
        assert bearer(raw, REMOTE_ADDR="10.1.2.3").get("/api/v1/customers/").status_code == 200
        assert bearer(raw, REMOTE_ADDR="10.1.2.3").get("/api/v1/customers/").status_code == 200
        assert bearer(raw, REMOTE_ADDR="10.1.9.9").get("/api/v1/customers/").status_code == 200
        token = ApiToken.all_tenants.get(pk=token.pk)
        assert token.last_used_at is not None and token.last_used_ip == "10.1.9.9"
        new_ip = SecurityEvent.objects.filter(type="token.used_new_ip", tenant=tenant_a.tenant)
        assert new_ip.count() == 2

    def test_billing_sees_own_tokens_admin_sees_all(self, tenant_a):
        billing = tenant_a.users[Role.BILLING]
        mine, _ = token_for(billing, tenant_a)
        theirs, _ = token_for(tenant_a.owner, tenant_a)
        as_billing = client_for(billing, tenant_a.tenant)
        assert [t["id"] for t in as_billing.get(URL).json()["results"]] == [str(mine.pk)]
        assert as_billing.get(f"{URL}{theirs.pk}/").status_code == 404
        assert as_billing.delete(f"{URL}{theirs.pk}/").status_code == 404
        as_admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        assert len(as_admin.get(URL).json()["results"]) == 2
        assert as_admin.delete(f"{URL}{theirs.pk}/").status_code == 204

    def test_policy_requires_and_caps_expiry(self, tenant_a):
        with tenant_a.scope():
            from apps.security.models import SecurityPolicy

            SecurityPolicy.objects.create(tenant=tenant_a.tenant, token_max_lifetime_days=30)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        assert client.post(URL, {"name": "x"}, format="json").status_code == 400
        far = (timezone.now() + timedelta(days=31)).isoformat()
        assert client.post(URL, {"name": "x", "expires_at": far}, format="json").status_code == 400
        near = (timezone.now() + timedelta(days=29)).isoformat()
        created = client.post(URL, {"name": "x", "expires_at": near}, format="json")
        assert created.status_code == 201
        # A token older than the policy allows (e.g. the cap was lowered later) stops working.
        raw = created.json()["token"]
        assert bearer(raw).get("/api/v1/customers/").status_code == 200
        ApiToken.all_tenants.filter(pk=created.json()["id"]).update(created_at=timezone.now() - timedelta(days=31))
        assert bearer(raw).get("/api/v1/customers/").status_code == 401


@pytest.mark.django_db
def test_a_session_key_never_looks_like_an_api_token(monkeypatch):
    """1 in 64³ random session keys would start with `mp_`: they are drawn again, not sent to the wrong resolver."""
    from apps.accounts import models as account_models
    from apps.accounts.models import AuthToken
    from tests.conftest import make_user

    draws = iter(["mp_looks-like-a-token", "mp_again", "a-normal-session-key-0123456789"])
    monkeypatch.setattr(account_models.secrets, "token_urlsafe", lambda n: next(draws))
    _token, raw = AuthToken.issue(user=make_user("s@example.com"), ttl=timedelta(hours=1))
    assert raw == "a-normal-session-key-0123456789"
    assert bearer(raw).get("/api/v1/security/me/").status_code == 200
