"""Shared pieces of the end-to-end acceptance tests (issues 17 and 18): a hosting business with a
web, a mail and a DNS node and its own nameservers, a five-site hosting plan and a domain product
in its catalog, and payments as they arrive: recorded by staff, or Stripe Connect's documented
``checkout.session.completed`` and ``payment_intent.succeeded`` events for the tenant's connected
account, signed with the Connect endpoint's secret (stripe-python's own signing code)."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from django.test import Client
from django.urls import reverse

from apps.catalog.services import product_create
from apps.domains import services as domain_services
from tests.billing_support import stripe_delivery, stripe_event
from tests.hosting.test_dns import dns_node
from tests.hosting_support import PLAN, nodes_in, plan_in

CONNECT_SECRET = "whsec_connect_endpoint_secret"  # tests/billing/test_connect.py's stripe_api sets it
STRIPE_WEBHOOK = "/api/v1/billing/webhooks/stripe"


def unique_domain(stem: str = "shop") -> str:
    """PowerDNS lives for the whole session (and the nginx config per test): a name of this test's own."""
    return f"{stem}-{uuid.uuid4().hex[:8]}.example"


def hosting_business(fx, *, nameservers: list[str]) -> dict:
    """The tenant's nodes (web, mail, DNS), its own nameservers, a five-site plan, a one-site plan and
    a domain product registered by hand (the manual registrar: no registry is reachable here)."""
    nodes_in(fx)
    dns_node(fx)
    with fx.scope():
        domain_services.domain_settings_update(tenant=fx.tenant, data={"nameservers": nameservers})
        domain = product_create(tenant=fx.tenant, data={
            "name": "Domain .example", "slug": "domain-example", "type": "domain", "visibility": "public",
            "config": {"registrar": "manual"},
            "prices": [{"currency": "EUR", "cycle": "annual", "amount": Decimal("12.00"), "setup_fee": Decimal(0)}],
        })  # fmt: skip
    return {
        "plan": plan_in(fx, slug="web-5", config=PLAN),
        "small": plan_in(fx, slug="web-1", config={**PLAN, "websites": 1}, amount="5.00"),
        "domain": domain,
    }


def checkout_session_completed(session_id: str, invoice, amount_minor: int, payment_intent: str) -> dict:
    """Stripe's documented Checkout Session object as ``checkout.session.completed`` carries it
    (https://docs.stripe.com/api/checkout/sessions/object), trimmed to what matters here."""
    return {
        "id": session_id, "object": "checkout.session", "mode": "payment", "status": "complete",
        "payment_status": "paid", "amount_subtotal": amount_minor, "amount_total": amount_minor,
        "currency": invoice.currency.lower(), "client_reference_id": str(invoice.pk),
        "customer": None, "customer_details": {"email": "buyer@example.com"}, "livemode": False,
        "metadata": {"mpanel_invoice_id": str(invoice.pk)}, "payment_intent": payment_intent,
        "success_url": "https://example.invalid/paid", "cancel_url": "https://example.invalid/cancelled",
        "created": int(time.time()) - 30, "expires_at": int(time.time()) + 3600,
    }  # fmt: skip


def payment_intent_succeeded(pi_id: str, invoice, amount_minor: int) -> dict:
    """Stripe's documented PaymentIntent object (https://docs.stripe.com/api/payment_intents/object)."""
    return {
        "id": pi_id, "object": "payment_intent", "amount": amount_minor, "amount_received": amount_minor,
        "currency": invoice.currency.lower(), "status": "succeeded", "livemode": False,
        "metadata": {"mpanel_invoice_id": str(invoice.pk)}, "latest_charge": f"ch_{pi_id[3:]}",
        "last_payment_error": None, "payment_method_types": ["card"], "created": int(time.time()) - 20,
    }  # fmt: skip


def post_signed(event: dict, secret: str = CONNECT_SECRET):
    body, header = stripe_delivery(event, secret=secret)
    return Client().post(STRIPE_WEBHOOK, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)


def pay_by_connect_replay(invoice, account: str) -> list[dict]:
    """What Stripe sends the platform's Connect endpoint when the customer completes Checkout on the
    tenant's account: the session completed, then its payment intent succeeded (one payment)."""
    minor = int((invoice.amount_due * 100).to_integral_value())
    tag = uuid.uuid4().hex[:14]
    pi = f"pi_3{tag}"
    answers = []
    for type_, obj in (
        ("checkout.session.completed", checkout_session_completed(f"cs_test_{tag}", invoice, minor, pi)),
        ("payment_intent.succeeded", payment_intent_succeeded(pi, invoice, minor)),
    ):
        event = {**stripe_event(f"evt_{type_[:2]}{tag}", type_, obj), "account": account}
        response = post_signed(event)
        assert response.status_code == 200, response.content
        answers.append(response.json())
    return answers


def pay_by_staff(admin, invoice) -> None:
    """Staff record a bank transfer for what is due, through the API (``admin``: an ADMIN+ client)."""
    paid = admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}),
                      {"amount": f"{invoice.amount_due:.2f}", "method": "bank_transfer"}, format="json")  # fmt: skip
    assert paid.status_code == 200, paid.content
