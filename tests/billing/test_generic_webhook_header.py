"""The header form of a tenant's generic webhook: `POST /api/v1/billing/webhooks/generic` with
`X-Mpanel-Tenant: <slug>` is that tenant's endpoint (its own secrets verify it, never the global one);
without the header, only the global secret (the platform's own events)."""

from __future__ import annotations

import pytest

from apps.billing.models import Payment, WebhookEvent
from tests.billing.test_generic_webhooks_tenant import event, rotate
from tests.billing_support import GENERIC_SECRET, fresh, issued, post_generic

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _platform_secret(settings):
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = GENERIC_SECRET


def post(body: dict, secret: str, tenant: str | None):
    return post_generic(body, secret, tenant=tenant)


def test_the_tenant_header_routes_to_the_tenant_and_pays_its_invoice_once(tenant_a):
    secret = rotate(tenant_a)["secret"]
    invoice = issued(tenant_a)
    first = post(event(invoice, "h-1"), secret, tenant_a.tenant.slug)
    assert first.status_code == 200 and first.json()["status"] == "processed", first.content
    assert post(event(invoice, "h-1"), secret, tenant_a.tenant.slug).status_code == 200
    assert Payment.all_tenants.count() == 1 and fresh(invoice).status == "paid"
    assert WebhookEvent.objects.get().tenant_id == tenant_a.tenant.pk


def test_with_the_header_only_the_tenants_own_secret_verifies(tenant_a, tenant_b):
    rotate(tenant_a)
    sb = rotate(tenant_b)["secret"]
    invoice = issued(tenant_a)
    assert post(event(invoice), GENERIC_SECRET, tenant_a.tenant.slug).status_code == 400  # the platform's
    assert post(event(invoice), sb, tenant_a.tenant.slug).status_code == 400  # another tenant's
    assert post(event(invoice), sb, "no-such-tenant").status_code == 400
    assert post(event(invoice), sb, "bad slug/../x").status_code == 400
    assert post(event(invoice), sb, "").status_code == 400
    assert not WebhookEvent.objects.exists() and fresh(invoice).status == "open"


def test_a_tenants_header_cannot_touch_another_tenants_invoice(tenant_a, tenant_b):
    sa = rotate(tenant_a)["secret"]
    victim = issued(tenant_b)
    answer = post(event(victim, "steal"), sa, tenant_a.tenant.slug)
    assert answer.status_code == 200 and answer.json()["status"] == "unmatched"
    assert fresh(victim).status == "open" and not Payment.all_tenants.exists()


def test_without_the_header_only_the_global_secret(tenant_a, tenant_b):
    sa = rotate(tenant_a)["secret"]
    theirs = issued(tenant_b)
    assert post(event(theirs, "p-1"), sa, None).status_code == 400  # a tenant's secret is not the platform's
    assert post(event(theirs, "p-2"), GENERIC_SECRET, None).json()["status"] == "processed"
    assert fresh(theirs).status == "paid"
