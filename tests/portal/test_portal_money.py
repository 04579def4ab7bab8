"""Invoices and payment in the portal: the signed link of every invoice email (one-click pay, no login),
Stripe Checkout from the portal with its success and cancel pages, a signed webhook replay that pays
the invoice; ordering through the pages (cart with tax and setup fees, checkout, invoice) and the API;
plan changes with the proration shown first."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client

from apps.billing.models import Invoice, InvoiceStatus
from apps.billing.services import invoices as invoice_services
from apps.orders.models import Order
from apps.tenancy.scoping import tenant_scope
from tests.billing.test_billing_webhooks import _StripeReplay, stripe_replay  # noqa: F401  (the fixture)
from tests.billing_support import STRIPE_SECRET, payment_intent, stripe_delivery, stripe_event

from .support import api_client, page_client

STRIPE = "/api/v1/billing/webhooks/stripe"


def pay_by_webhook(invoice) -> None:
    """Stripe's documented payment_intent.succeeded, signed as Stripe signs it, for what is due."""
    minor = int(invoice.amount_due * 100)
    body, header = stripe_delivery(
        stripe_event(
            f"evt_{invoice.pk.hex[:12]}",
            "payment_intent.succeeded",
            payment_intent(f"pi_{invoice.pk.hex[:12]}", invoice, minor),
        )
    )
    response = Client().post(STRIPE, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
    assert response.status_code == 200, response.content


@pytest.fixture(autouse=True)
def _stripe_secret(settings):
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET


@pytest.mark.django_db
def test_the_invoice_email_link_opens_and_pays_it_without_a_login(
    portal,
    stripe_replay,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    a1, _a2, b1 = portal
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True), tenant_scope(a1.tenant):
        draft = invoice_services.invoice_create(
            tenant=a1.tenant,
            customer=a1.customer,
            currency="EUR",
            lines=[{"description": "Backup", "quantity": "1", "unit_price": "5.00", "tax_rate": "0"}],
        )
        invoice = invoice_services.invoice_issue(invoice=draft)
        invoice_services.invoice_send(invoice=invoice)
    bodies = [m.body for m in mail.outbox if invoice.number in m.subject]
    assert bodies, [m.subject for m in mail.outbox]
    url = re.search(r"https?://\S+/i/\S+", bodies[0]).group(0)
    path = urlsplit(url).path
    assert path.startswith(f"/portal/{a1.tenant.slug}/i/")
    guest = Client()
    page = guest.get(path)
    assert page.status_code == 200 and invoice.number.encode() in page.content
    # The token is bound to its tenant and signed: altered or moved, it opens nothing.
    assert guest.get(path[:-3] + "xyz/").status_code == 404
    assert guest.get(path.replace(a1.tenant.slug, b1.tenant.slug)).status_code == 404
    # One click: a Stripe Checkout session for what is due, back to the portal's pages.
    paying = guest.post(path)
    assert paying.status_code == 200 and b"https://checkout.stripe.com/" in paying.content
    _path, form, _headers = _StripeReplay.requests[-1]
    assert form["success_url"] == [f"http://testserver/portal/{a1.tenant.slug}/invoices/{invoice.pk}/paid/"] or form[
        "success_url"
    ][0].endswith(f"/portal/{a1.tenant.slug}/invoices/{invoice.pk}/paid/")
    assert form["cancel_url"][0].endswith(f"/portal/{a1.tenant.slug}/invoices/{invoice.pk}/paid/?cancelled=1")
    paid_page = f"/portal/{a1.tenant.slug}/invoices/{invoice.pk}/paid/"
    assert guest.get(paid_page + "?poll=1").json() == {"paid": False, "status": "open"}
    pay_by_webhook(invoice)
    assert guest.get(paid_page + "?poll=1").json() == {"paid": True, "status": "paid"}
    assert b"is <span" in guest.get(paid_page).content
    # Someone without the link learns nothing on the thank-you page.
    assert Client().get(paid_page + "?poll=1").json() == {"paid": False, "status": "unknown"}


@pytest.mark.django_db
def test_a_logged_in_customer_pays_from_the_invoice_page(portal, stripe_replay):  # noqa: F811
    a1 = portal[0]
    browser = page_client(a1.users["billing"])
    slug = a1.tenant.slug
    invoice = a1.invoice
    page = browser.get(f"/portal/{slug}/invoices/{invoice.pk}/")
    assert page.status_code == 200 and b"Pay " in page.content
    pdf = browser.get(f"/portal/{slug}/invoices/{invoice.pk}/pdf/")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    going = browser.post(f"/portal/{slug}/invoices/{invoice.pk}/pay/")
    assert going.status_code == 200 and b"data-auto-follow" in going.content
    pay_by_webhook(invoice)
    assert browser.get(f"/portal/{slug}/invoices/{invoice.pk}/paid/?poll=1").json()["paid"] is True
    assert Invoice.all_tenants.get(pk=invoice.pk).status == InvoiceStatus.PAID
    # The API's pay link for another customer's invoice: 404; for its own paid one: 409 (nothing due).
    api = api_client(a1.users["owner"])
    assert api.post(f"/api/v1/portal/invoices/{portal[1].invoice.pk}/pay").status_code == 404
    assert api.post(f"/api/v1/portal/invoices/{invoice.pk}/pay").status_code == 409


@pytest.mark.django_db
def test_ordering_through_the_pages_shows_tax_and_setup_fees_then_invoices(portal):
    a1 = portal[0]
    slug = a1.tenant.slug
    browser = page_client(a1.users["owner"])
    catalog = browser.get(f"/portal/{slug}/catalog/")
    assert catalog.status_code == 200 and b"Web Hosting" in catalog.content
    configure = f"/portal/{slug}/order/{a1.plan.pk}/"
    assert browser.get(configure).status_code == 200
    missing = browser.post(configure, {"product": str(a1.plan.pk), "cycle": "monthly", "quantity": "1"})
    assert missing.status_code == 200 and b"Enter the domain name" in missing.content
    added = browser.post(
        configure, {"product": str(a1.plan.pk), "cycle": "monthly", "quantity": "2", "domain": "shop.example"}
    )
    assert added.status_code == 302 and added["Location"].endswith("/cart/")
    cart = browser.get(f"/portal/{slug}/cart/")
    text = cart.content.decode()
    assert "shop.example" in text and "€16.00" in text and "€4.00" in text and "€20.00" in text
    before = Order.all_tenants.filter(customer=a1.customer).count()
    done = browser.post(f"/portal/{slug}/checkout/")
    assert done.status_code == 302 and "/invoices/" in done["Location"]
    order = Order.all_tenants.filter(customer=a1.customer).order_by("-created_at").first()
    assert Order.all_tenants.filter(customer=a1.customer).count() == before + 1
    assert order.status == "accepted" and order.invoice.total == order.total
    progress = browser.get(f"/portal/{slug}/orders/{order.pk}/?poll=1").json()
    assert progress["done"] is False and progress["services"][0]["status"] == "pending"
    assert browser.get(f"/portal/{slug}/cart/").content.count(b"Your cart is empty") == 1


@pytest.mark.django_db
def test_ordering_through_the_api(portal, tenant_b):
    a1, _a2, b1 = portal
    api = api_client(a1.users["billing"])
    made = api.post(
        "/api/v1/portal/orders", {"items": [{"product": str(a1.plan.pk), "cycle": "monthly"}]}, format="json"
    )
    assert made.status_code == 201, made.content
    assert made.json()["status"] == "accepted" and made.json()["invoice"]
    foreign = api.post(
        "/api/v1/portal/orders", {"items": [{"product": str(b1.plan.pk), "cycle": "monthly"}]}, format="json"
    )
    assert foreign.status_code == 400
    technical = api_client(a1.users["technical"])
    assert technical.post("/api/v1/portal/orders", {"items": []}, format="json").status_code == 403


@pytest.mark.django_db
def test_a_plan_change_shows_the_proration_before_it_applies(portal):
    a1 = portal[0]
    slug = a1.tenant.slug
    # Pay the order so the subscription runs.
    pay_by_webhook(Invoice.all_tenants.get(pk=a1.order.invoice_id))
    browser = page_client(a1.users["owner"])
    sub = a1.subscription
    preview = browser.get(f"/portal/{slug}/services/{sub.pk}/?product={a1.plan.pk}&quantity=3")
    assert preview.status_code == 200, preview.content[:300]
    assert b"Show the price first" in preview.content and b"Confirm the change" in preview.content
    assert b"Charged on your next invoice now" in preview.content
    sub.refresh_from_db()
    assert sub.quantity == 1  # nothing applied yet
    applied = browser.post(f"/portal/{slug}/services/{sub.pk}/change/", {"product": str(a1.plan.pk), "quantity": "3"})
    assert applied.status_code == 302
    sub.refresh_from_db()
    assert sub.quantity == 3
