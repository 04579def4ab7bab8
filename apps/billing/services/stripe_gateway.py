"""Outgoing calls to Stripe (Checkout links, refunds, reading a session), through the official library.

Only calls out: what Stripe's answers mean for our payments is decided by the callers
(``payments``, ``reconciliation``, ``webhooks``), so this module imports none of them.

Objects we create carry ``metadata.mpanel_invoice_id`` so that webhooks find the invoice back.
"""

from __future__ import annotations

from decimal import Decimal

import stripe
from django.conf import settings

from apps.common.exceptions import Conflict, DomainError

from ..amounts import to_minor_units
from ..models import CheckoutSession, Invoice, InvoiceStatus, Payment


class ProviderError(DomainError):
    status_code = 502
    code = "payment_provider_error"


def _client() -> stripe.StripeClient:
    if not settings.STRIPE_API_KEY:
        raise Conflict("Stripe is not configured on this platform (STRIPE_API_KEY).", code="stripe_not_configured")
    kwargs = {}
    if settings.STRIPE_API_BASE:
        kwargs["base_addresses"] = {"api": settings.STRIPE_API_BASE}
    return stripe.StripeClient(settings.STRIPE_API_KEY, max_network_retries=2, **kwargs)


def checkout_link(*, invoice: Invoice) -> dict:
    """A hosted Checkout page for what is due on the invoice."""
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE) or invoice.amount_due <= 0:
        raise Conflict(f"A {invoice.status} invoice with nothing due cannot be paid.")
    metadata = {"mpanel_invoice_id": str(invoice.pk), "mpanel_tenant_id": str(invoice.tenant_id)}
    base = settings.MPANEL_FRONTEND_URL.rstrip("/")
    try:
        session = _client().v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": invoice.currency.lower(),
                            "unit_amount": to_minor_units(invoice.amount_due, invoice.currency),
                            "product_data": {"name": f"Invoice {invoice.number}"},
                        },
                    }
                ],
                "metadata": metadata,
                "payment_intent_data": {"metadata": metadata},
                "customer_email": invoice.customer.invoice_email,
                # The customer portal's pages of the invoice (apps/portal): the thank-you page, which
                # follows the payment until the webhook has recorded it, and the invoice itself.
                "success_url": f"{base}/portal/{invoice.tenant.slug}/invoices/{invoice.pk}/paid/",
                "cancel_url": f"{base}/portal/{invoice.tenant.slug}/invoices/{invoice.pk}/paid/?cancelled=1",
            },
            options={
                "idempotency_key": f"checkout-{invoice.pk}-{to_minor_units(invoice.amount_due, invoice.currency)}"
            },
        )
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe refused the request: {exc.user_message or exc}") from exc
    CheckoutSession.objects.get_or_create(
        provider="stripe", session_id=session.id,
        defaults={"tenant_id": invoice.tenant_id, "invoice": invoice, "amount": invoice.amount_due,
                  "currency": invoice.currency, "url": session.url},
    )  # fmt: skip
    return {"provider": "stripe", "id": session.id, "url": session.url, "expires_at": session.expires_at}


def checkout_session(session_id: str, *, client: stripe.StripeClient | None = None):
    """Stripe's view of one Checkout session now (raises ``stripe.StripeError``)."""
    return (client or _client()).v1.checkout.sessions.retrieve(session_id)


def client() -> stripe.StripeClient:
    """One client for several calls (the reconciler's); refuses (409) when Stripe is not configured."""
    return _client()


def refund(*, payment: Payment, amount: Decimal) -> str:
    if not payment.provider_ref:
        raise Conflict("This Stripe payment has no payment intent to refund.")
    try:
        result = _client().v1.refunds.create(
            params={"payment_intent": payment.provider_ref, "amount": to_minor_units(amount, payment.currency)},
            options={"idempotency_key": f"refund-{payment.pk}-{payment.refunded_amount}-{amount}"},
        )
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe refused the refund: {exc.user_message or exc}") from exc
    return result.id
