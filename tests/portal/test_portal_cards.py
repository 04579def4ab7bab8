"""Saved cards in the portal: the *Payment methods* page and ``/api/v1/portal/payment-methods``.

A card is added on Stripe's hosted page (Checkout in setup mode, on the tenant's connected account:
the local replay of tests/billing_support.py), and listed once the signed ``setup_intent.succeeded``
replay arrives; then made the default and removed (detached at Stripe). The technical role is
refused (403), another customer's card is a 404 (the generated matrix, test_portal_isolation.py,
covers every role and both kinds of other customer)."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.core import mail
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.models import CardCharge, SavedPaymentMethod
from apps.billing.services import invoices as invoice_services
from apps.portal.api import PortalPaymentMethodViewSet
from apps.portal.models import PortalRole
from apps.tenancy.scoping import tenant_scope
from tests.billing_support import (
    connect_event,
    connected,
    payment_method_object,
    post_connect_event,
    setup_intent_object,
    stripe_api,  # noqa: F401 (a fixture)
)

from .support import api_client, page_client

API = "/api/v1/portal/payment-methods"


def stripe_saves_the_card(stripe_api, account, *, last4="4242", n=1):  # noqa: F811
    """What Stripe does once the customer entered a card on the setup page we opened last."""
    session = [s for (acct, _id), s in stripe_api.sessions.items() if acct == account and s["mode"] == "setup"][-1]
    pm_id = f"pm_1Portal{n:06d}"
    stripe_api.payment_methods[(account, pm_id)] = payment_method_object(pm_id, session["customer"], last4=last4)
    intent = setup_intent_object(session["setup_intent"], session["customer"], pm_id, session["metadata"])
    response = post_connect_event(connect_event(f"evt_portal_seti_{n}", "setup_intent.succeeded", intent, account))
    assert response.json()["status"] == "processed", response.content
    return pm_id


@pytest.fixture
def world(portal, stripe_api, settings):  # noqa: F811
    a1, a2, b1 = portal
    settings.MPANEL_FRONTEND_URL = "https://panel.example"
    fx = type("Fx", (), {"tenant": a1.tenant, "scope": lambda self: tenant_scope(a1.tenant)})()
    account = connected(fx, stripe_api, "acct_1PortalCards0").account_id
    return a1, a2, b1, account


@pytest.mark.django_db
class TestThePaymentMethodsPage:
    def test_add_a_card_on_stripes_page_make_it_default_and_remove_it(self, world, stripe_api):  # noqa: F811
        a1, _a2, _b1, account = world
        slug = a1.tenant.slug
        client = page_client(a1.users[PortalRole.BILLING])
        page = client.get(f"/portal/{slug}/payment-methods/")
        assert page.status_code == 200 and b"No saved cards." in page.content and b"Add a card" in page.content
        going = client.post(f"/portal/{slug}/payment-methods/add/")
        assert going.status_code == 200
        url = unescape(re.search(rb'id="go-pay"[^>]*href="([^"]+)"', going.content).group(1).decode())
        assert url.startswith("https://checkout.stripe.com/")
        setup = next(r for r in stripe_api.sent if r["path"] == "/v1/checkout/sessions")
        assert setup["account"] == account and setup["form"]["mode"] == "setup"
        assert setup["form"]["success_url"] == f"https://panel.example/portal/{slug}/payment-methods/?saved=1"
        assert setup["form"]["cancel_url"] == f"https://panel.example/portal/{slug}/payment-methods/?cancelled=1"
        # Stripe's success page is a real portal page: it says the card is on its way until it is listed.
        waiting = client.get(f"/portal/{slug}/payment-methods/?saved=1")
        assert waiting.status_code == 200 and b"being saved" in waiting.content
        first = stripe_saves_the_card(stripe_api, account, last4="4242", n=1)
        client.post(f"/portal/{slug}/payment-methods/add/")
        second = stripe_saves_the_card(stripe_api, account, last4="5556", n=2)
        listed = client.get(f"/portal/{slug}/payment-methods/").content.decode()
        assert "Visa •••• 4242" in listed and "Visa •••• 5556" in listed and "08/2030" in listed
        card_2 = SavedPaymentMethod.all_tenants.get(stripe_payment_method_id=second)
        assert client.post(f"/portal/{slug}/payment-methods/{card_2.pk}/default/").status_code == 302
        assert SavedPaymentMethod.all_tenants.get(is_default=True).pk == card_2.pk
        event = AuditEvent.objects.filter(action="payment_method.set_default", tenant=a1.tenant).latest("created_at")
        assert event.via == "portal" and event.actor_email == a1.users[PortalRole.BILLING].email
        assert client.post(f"/portal/{slug}/payment-methods/{card_2.pk}/remove/").status_code == 302
        assert any(r["path"] == f"/v1/payment_methods/{second}/detach" and r["account"] == account
                   for r in stripe_api.sent)  # fmt: skip
        left = SavedPaymentMethod.all_tenants.get()
        assert left.stripe_payment_method_id == first and left.is_default

    def test_the_technical_role_is_refused_and_a_tenant_without_stripe_offers_no_cards(self, world, stripe_api):  # noqa: F811
        a1, _a2, b1, _account = world
        technical = page_client(a1.users[PortalRole.TECHNICAL])
        assert technical.get(f"/portal/{a1.tenant.slug}/payment-methods/").status_code == 403
        assert technical.post(f"/portal/{a1.tenant.slug}/payment-methods/add/").status_code == 403
        assert api_client(a1.users[PortalRole.TECHNICAL]).get(API).status_code == 403
        assert b"Payment methods" not in technical.get(f"/portal/{a1.tenant.slug}/dashboard/").content
        # Tenant B has no connected account: the page says so and keeps the manual methods.
        owner_b = page_client(b1.users[PortalRole.OWNER])
        page = owner_b.get(f"/portal/{b1.tenant.slug}/payment-methods/").content.decode()
        assert "Saved cards are not offered here" in page and "Bank transfer" in page and "Add a card" not in page
        refused = owner_b.post(f"/portal/{b1.tenant.slug}/payment-methods/add/", follow=True)
        assert b"not offered" in refused.content
        api = api_client(b1.users[PortalRole.OWNER])
        assert api.get(API).json()["cards_offered"] is False
        answer = api.post(f"{API}/setup", {}, format="json")
        assert answer.status_code == 409 and answer.json()["code"] == "cards_not_offered"
        assert not [r for r in stripe_api.sent if r["path"] == "/v1/checkout/sessions"]

    def test_a_renewal_is_charged_on_the_card_saved_in_the_portal(
        self,
        world,
        stripe_api,  # noqa: F811
        django_capture_on_commit_callbacks,
    ):
        a1, _a2, _b1, account = world
        page_client(a1.users[PortalRole.OWNER]).post(f"/portal/{a1.tenant.slug}/payment-methods/add/")
        stripe_saves_the_card(stripe_api, account)
        mail.outbox.clear()
        with tenant_scope(a1.tenant), django_capture_on_commit_callbacks(execute=True):
            draft = invoice_services.invoice_create(
                tenant=a1.tenant, customer=a1.customer, currency="EUR",
                lines=[{"description": "Renewal", "quantity": "1", "unit_price": "8.00", "tax_rate": "0"}],
            )  # fmt: skip
            invoice = invoice_services.invoice_issue(invoice=draft)
        invoice.refresh_from_db()
        assert invoice.status == "paid" and CardCharge.all_tenants.get(invoice=invoice).status == "succeeded"
        assert any("Receipt" in m.subject for m in mail.outbox)


@pytest.mark.django_db
class TestPortalPaymentMethodApi:
    covers = [PortalPaymentMethodViewSet]

    def test_list_setup_default_delete(self, world, stripe_api):  # noqa: F811
        a1, a2, _b1, account = world
        api = api_client(a1.users[PortalRole.OWNER])
        empty = api.get(API).json()
        assert empty == {"cards_offered": True, "accepted": ["Bank transfer", "Cash", "Cheque"], "results": []}
        made = api.post(f"{API}/setup", {"success_url": "https://shop.example/cards/ok"}, format="json")
        assert made.status_code == 201 and made.json()["url"].startswith("https://checkout.stripe.com/")
        sent = [r for r in stripe_api.sent if r["path"] == "/v1/checkout/sessions"][-1]["form"]
        assert sent["success_url"] == "https://shop.example/cards/ok"
        assert sent["cancel_url"].endswith(f"/portal/{a1.tenant.slug}/payment-methods/?cancelled=1")
        assert api.post(f"{API}/setup", {"success_url": "javascript:alert(1)"}, format="json").status_code == 400
        stripe_saves_the_card(stripe_api, account, n=1)
        api.post(f"{API}/setup", {}, format="json")
        stripe_saves_the_card(stripe_api, account, last4="0005", n=2)
        rows = api.get(API).json()["results"]
        assert [(r["last4"], r["is_default"]) for r in rows] == [("4242", True), ("0005", False)]
        other = rows[1]["id"]
        default = api.post(reverse("portal-payment-method-make-default", kwargs={"pk": other}))
        assert default.status_code == 200 and default.json()["is_default"] is True
        # Another customer of the same tenant sees none of it.
        stranger = api_client(a2.users[PortalRole.OWNER])
        assert stranger.get(API).json()["results"] == []
        assert stranger.delete(reverse("portal-payment-method-detail", kwargs={"pk": other})).status_code == 404
        assert api.delete(reverse("portal-payment-method-detail", kwargs={"pk": other})).status_code == 204
        assert [r["last4"] for r in api.get(API).json()["results"]] == ["4242"]
        assert api.get(API).json()["results"][0]["is_default"] is True
        assert AuditEvent.objects.filter(action="payment_method.remove", via="portal").exists()
