"""Helpers for the billing tests: customers, invoices in a given state, signed webhook deliveries."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from stripe import WebhookSignature

from apps.billing.services import invoices
from apps.customers.models import Customer

STRIPE_SECRET = "whsec_test_secret_for_mpanel"
GENERIC_SECRET = "generic-test-secret"


def customer_of(fx, email="buyer@example.com", currency="EUR") -> Customer:
    with fx.scope():
        existing = Customer.objects.filter(email=email).first()
        return existing or Customer.objects.create(name="Buyer", email=email, currency=currency)


def draft(fx, customer=None, lines=None, currency="EUR"):
    customer = customer or customer_of(fx, currency=currency)
    lines = lines or [
        {"description": "Hosting", "quantity": "1", "unit_price": "10.00", "tax_rate": "21"},
        {"description": "Domain", "quantity": "1", "unit_price": "9.99", "tax_rate": "21"},
    ]
    with fx.scope():
        return invoices.invoice_create(tenant=fx.tenant, customer=customer, lines=lines, currency=currency)


def issued(fx, **kwargs):
    invoice = draft(fx, **kwargs)
    with fx.scope():
        return invoices.invoice_issue(invoice=invoice)


def stripe_delivery(event: dict, *, secret: str = STRIPE_SECRET, timestamp: int | None = None):
    """A delivery signed by stripe-python's own signing code, as Stripe signs it."""
    body = json.dumps(event)
    header = WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body, header


def stripe_event(event_id: str, type_: str, obj: dict, created: int | None = None) -> dict:
    """The envelope of Stripe's documented Event object (API version 2024-06-20 shape)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created or int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }


def payment_intent(pi_id: str, invoice, amount_minor: int, status="succeeded", currency=None) -> dict:
    """Stripe's documented PaymentIntent object, trimmed to the fields that matter here."""
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount_minor,
        "amount_received": amount_minor if status == "succeeded" else 0,
        "currency": (currency or invoice.currency).lower(),
        "metadata": {"mpanel_invoice_id": str(invoice.pk)},
        "status": status,
        "last_payment_error": None if status == "succeeded" else {"message": "Your card was declined."},
        "latest_charge": f"ch_{pi_id[3:]}",
        "livemode": False,
    }


def money(value) -> Decimal:
    return Decimal(str(value))
