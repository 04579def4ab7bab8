"""Each tenant's own generic webhook endpoint and signing secret (rotatable, two valid while it rotates)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing.models import Payment, WebhookEvent, WebhookSecret
from apps.billing.services import webhook_secrets
from apps.tenancy.roles import Role
from tests.billing_support import GENERIC_SECRET, fresh, generic_payment, issued, post_generic
from tests.conftest import client_for
from tests.security.test_security_tokens import bearer, token_for

SECRETS = "/api/v1/billing/settings/webhook-secrets"
GLOBAL = "/api/v1/billing/webhooks/generic"


@pytest.fixture(autouse=True)
def _platform_secret(settings):
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = GENERIC_SECRET


def endpoint(fx) -> str:
    return f"/api/v1/billing/webhooks/generic/{fx.tenant.slug}"


def event(invoice, id_="g1", type_="payment.succeeded", amount=None, reference="bank-1") -> dict:
    return generic_payment(invoice, id_, type_=type_, amount=amount, reference=reference)


def post(url, body: dict, *secrets: str, timestamp=None):
    return post_generic(body, *secrets, url=url, timestamp=timestamp)


def rotate(fx, **body) -> dict:
    response = client_for(fx.users[Role.ADMIN], fx.tenant).post(SECRETS, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db
class TestTenantSecrets:
    def test_rotation_shows_the_secret_once_and_stores_it_encrypted(self, tenant_a):
        first = rotate(tenant_a)
        secret = first["secret"]
        assert secret.startswith("mpwh_") and len(secret) > 40
        assert first["endpoint"].endswith(f"/api/v1/billing/webhooks/generic/{tenant_a.tenant.slug}")
        row = WebhookSecret.all_tenants.get()
        assert secret not in row.secret_encrypted and row.prefix == secret[: len(row.prefix)]
        listed = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant).get(SECRETS).json()
        assert secret not in json.dumps(listed) and [s["prefix"] for s in listed["secrets"]] == [row.prefix]
        audit = AuditEvent.objects.get(action="webhook_secret.rotate")
        assert secret not in json.dumps(audit.changes) and "secret_encrypted" not in json.dumps(audit.changes)

    def test_two_are_valid_during_a_rotation_never_three(self, tenant_a):
        invoice = issued(tenant_a)
        old = rotate(tenant_a)["secret"]
        new = rotate(tenant_a, grace_hours=2)["secret"]
        assert len(webhook_secrets.valid_secrets(tenant_a.tenant)) == 2
        assert post(endpoint(tenant_a), event(invoice, "g-old", amount="1.00"), old).json()["status"] == "processed"
        assert post(endpoint(tenant_a), event(invoice, "g-new", amount="1.00", reference="b2"), new).status_code == 200
        newest = rotate(tenant_a)["secret"]
        valid = webhook_secrets.valid_secrets(tenant_a.tenant)
        assert sorted(valid) == sorted([new, newest])  # the oldest one's grace ended at the third rotation
        assert post(endpoint(tenant_a), event(invoice, "g-3", reference="b3"), old).status_code == 400
        # After the grace period only the newest signs.
        WebhookSecret.all_tenants.exclude(expires_at=None).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert post(endpoint(tenant_a), event(invoice, "g-4", reference="b4"), new).status_code == 400
        assert post(endpoint(tenant_a), event(invoice, "g-5", reference="b5"), newest).status_code == 200

    def test_zero_grace_ends_the_old_secret_at_once_and_bad_grace_is_400(self, tenant_a):
        old = rotate(tenant_a)["secret"]
        rotate(tenant_a, grace_hours=0)
        assert old not in webhook_secrets.valid_secrets(tenant_a.tenant)
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        for bad in (-1, 169, "24", True):
            assert admin.post(SECRETS, {"grace_hours": bad}, format="json").status_code == 400, bad
        assert WebhookSecret.all_tenants.count() == 2

    def test_roles_tokens_and_tenants(self, tenant_a, tenant_b):
        rotate(tenant_a)
        assert client_for(None, tenant_a.tenant).get(SECRETS).status_code == 401
        for role in (Role.VIEWER, Role.MEMBER, Role.BILLING):
            client = client_for(tenant_a.users[role], tenant_a.tenant)
            assert client.get(SECRETS).status_code == 403 and client.post(SECRETS, {}, format="json").status_code == 403
        assert client_for(tenant_b.users[Role.OWNER], tenant_b.tenant).get(SECRETS).json()["secrets"] == []
        # A secret signs payments: an API token neither reads nor rotates it.
        _token, raw = token_for(tenant_a.owner, tenant_a, role=Role.OWNER)
        assert bearer(raw, tenant_a.tenant).post(SECRETS, {}, format="json").status_code == 403
        assert WebhookSecret.all_tenants.count() == 1


@pytest.mark.django_db
class TestTenantEndpoint:
    def test_a_tenants_event_pays_its_invoice_once(self, tenant_a):
        secret = rotate(tenant_a)["secret"]
        invoice = issued(tenant_a)
        first = post(endpoint(tenant_a), event(invoice), secret)
        assert first.status_code == 200 and first.json()["status"] == "processed"
        assert post(endpoint(tenant_a), event(invoice), secret).status_code == 200
        assert Payment.all_tenants.count() == 1 and fresh(invoice).status == "paid"
        stored = WebhookEvent.objects.get()
        assert stored.tenant_id == tenant_a.tenant.pk and stored.scope == str(tenant_a.tenant.pk)

    def test_two_tenants_may_use_the_same_event_id(self, tenant_a, tenant_b):
        sa, sb = rotate(tenant_a)["secret"], rotate(tenant_b)["secret"]
        ia, ib = issued(tenant_a), issued(tenant_b)
        assert post(endpoint(tenant_a), event(ia, "evt-1"), sa).json()["status"] == "processed"
        assert post(endpoint(tenant_b), event(ib, "evt-1"), sb).json()["status"] == "processed"
        assert fresh(ia).status == "paid" and fresh(ib).status == "paid"

    def test_a_tenants_endpoint_cannot_touch_another_tenants_invoice(self, tenant_a, tenant_b):
        sa = rotate(tenant_a)["secret"]
        victim = issued(tenant_b)
        response = post(endpoint(tenant_a), event(victim, "steal"), sa)
        assert response.status_code == 200 and response.json()["status"] == "unmatched"
        assert fresh(victim).status == "open" and not Payment.all_tenants.exists()
        assert WebhookEvent.objects.get().error

    def test_refusals_store_nothing(self, tenant_a, tenant_b):
        sa = rotate(tenant_a)["secret"]
        sb = rotate(tenant_b)["secret"]
        invoice = issued(tenant_a)
        assert post(endpoint(tenant_a), event(invoice), sb).status_code == 400  # another tenant's secret
        assert post(endpoint(tenant_a), event(invoice), GENERIC_SECRET).status_code == 400  # the platform's
        assert post(endpoint(tenant_a), event(invoice), sa, timestamp=int(time.time()) - 301).status_code == 400
        assert post("/api/v1/billing/webhooks/generic/no-such-tenant", event(invoice), sa).status_code == 400
        no_secret = client_for().post(f"/api/v1/billing/webhooks/generic/{tenant_a.tenant.slug}x", b"{}",
                                      content_type="application/json", HTTP_X_MPANEL_SIGNATURE="t=1,v1=0")  # fmt: skip
        assert no_secret.status_code == 400
        assert not WebhookEvent.objects.exists() and fresh(invoice).status == "open"

    def test_the_platform_secret_no_longer_reaches_a_tenant_with_its_own(self, tenant_a, tenant_b):
        """The global secret is the platform's own integration, for tenants that have none of their own."""
        rotate(tenant_a)
        mine, theirs = issued(tenant_a), issued(tenant_b)
        refused = post(GLOBAL, event(mine, "p-1"), GENERIC_SECRET)
        assert refused.status_code == 200 and refused.json()["status"] == "unmatched"
        assert "own endpoint" in WebhookEvent.objects.get(event_id="p-1").error
        assert fresh(mine).status == "open"
        assert post(GLOBAL, event(theirs, "p-2"), GENERIC_SECRET).json()["status"] == "processed"
        assert fresh(theirs).status == "paid"
