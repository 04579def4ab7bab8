"""Stripe Checkout sessions still open here, asked about again: a payment whose webhook never
arrived is recorded anyway (once: the payment intent id is the payment's key, as for webhooks)."""

from __future__ import annotations

from datetime import timedelta

import stripe
from django.conf import settings
from django.utils import timezone

from apps.tenancy.scoping import tenant_scope

from ..amounts import from_minor_units
from ..models import CheckoutSession, PaymentMethod
from . import payments, stripe_gateway


def reconcile_open_sessions(*, older_than_seconds: int = 600, limit: int = 200) -> dict:
    """Ask Stripe about checkout sessions that are still open here: a paid one whose webhook never
    arrived is recorded now (once: the payment intent id is the payment's key, as for webhooks)."""
    if not settings.STRIPE_API_KEY:
        return {"checked": 0, "paid": 0, "expired": 0}
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    open_sessions = CheckoutSession.all_tenants.select_related("invoice", "tenant").filter(
        provider="stripe", status="open", created_at__lt=cutoff
    )[:limit]
    counts = {"checked": 0, "paid": 0, "expired": 0}
    client = stripe_gateway.client()
    for row in open_sessions:
        try:
            session = stripe_gateway.checkout_session(row.session_id, client=client, account=row.account)
        except stripe.StripeError:
            continue  # asked again next time
        counts["checked"] += 1
        with tenant_scope(row.tenant):
            if session.payment_status == "paid":
                currency = str(session.currency).upper()
                payments.payment_record(
                    invoice=row.invoice, amount=from_minor_units(session.amount_total, currency), currency=currency,
                    method=PaymentMethod.STRIPE, provider_ref=session.payment_intent or session.id,
                    reference=session.id, provider_account=row.account,
                )  # fmt: skip
                row.status = "paid"
                counts["paid"] += 1
            elif session.status == "expired":
                row.status = "expired"
                counts["expired"] += 1
            row.checked_at = timezone.now()
            row.save(update_fields=["status", "checked_at", "updated_at"])
    return counts
