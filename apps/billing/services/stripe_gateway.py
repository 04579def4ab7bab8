"""Outgoing calls to Stripe (Checkout links, refunds, reading a session, Connect accounts and their
onboarding links), through the official library.

Only calls out: what Stripe's answers mean for our payments is decided by the callers
(``payments``, ``reconciliation``, ``webhooks``, ``connect``), so this module imports none of them.

Objects we create carry ``metadata.mpanel_invoice_id`` so that webhooks find the invoice back. A
tenant with a connected account (``StripeConnection``) is charged on it: every call about its money
carries ``stripe_account`` (Stripe's ``Stripe-Account`` header), so the payment, its refund and its
Checkout session live in the tenant's own Stripe account, with the platform's fee
(``application_fee_amount``) when operators set one.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import stripe
from django.conf import settings

from apps.common.exceptions import Conflict, DomainError
from apps.whitelabel.selectors import portal_url

from ..amounts import from_minor_units, to_minor_units
from ..models import CheckoutSession, Invoice, InvoiceStatus, Payment, StripeConnection


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


def live_connection(tenant_id) -> StripeConnection | None:
    """The tenant's connected Stripe account, unless it was disconnected."""
    return StripeConnection.objects.filter(tenant_id=tenant_id, disconnected_at__isnull=True).first()


def application_fee(amount_minor: int, percent: Decimal) -> int:
    """The platform's fee in minor units: ``percent`` of the charge, rounded half-up."""
    return int((Decimal(amount_minor) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def charge_account(tenant_id) -> StripeConnection | None:
    """Where the tenant's card payments go: its connected account (which must take charges), or the
    platform's own account where operators allow that (``MPANEL_STRIPE_PLATFORM_CHARGES``); else 409."""
    connection = live_connection(tenant_id)
    if connection is not None:
        if not connection.charges_enabled:
            raise Conflict(
                "This tenant's Stripe account cannot take payments yet: finish Stripe's onboarding "
                "(POST /billing/stripe/connect answers the link).", code="stripe_onboarding_incomplete",
            )  # fmt: skip
        return connection
    if not settings.MPANEL_STRIPE_PLATFORM_CHARGES:
        raise Conflict(
            "This tenant has not connected a Stripe account: pay by another method, or connect one "
            "(POST /billing/stripe/connect).", code="stripe_not_connected",
        )  # fmt: skip
    return None


def checkout_link(*, invoice: Invoice) -> dict:
    """A hosted Checkout page for what is due on the invoice, on the tenant's connected account."""
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE) or invoice.amount_due <= 0:
        raise Conflict(f"A {invoice.status} invoice with nothing due cannot be paid.")
    connection = charge_account(invoice.tenant_id)
    account = connection.account_id if connection else ""
    metadata = {"mpanel_invoice_id": str(invoice.pk), "mpanel_tenant_id": str(invoice.tenant_id)}
    minor = to_minor_units(invoice.amount_due, invoice.currency)
    fee = application_fee(minor, connection.platform_fee_percent) if connection else 0
    intent_data: dict = {"metadata": metadata}
    if fee > 0:
        intent_data["application_fee_amount"] = fee
    options: dict = {"idempotency_key": f"checkout-{invoice.pk}-{minor}-{account or 'platform'}-{fee}"}
    if account:
        options["stripe_account"] = account
    try:
        session = _client().v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": invoice.currency.lower(),
                            "unit_amount": minor,
                            "product_data": {"name": f"Invoice {invoice.number}"},
                        },
                    }
                ],
                "metadata": metadata,
                "payment_intent_data": intent_data,
                "customer_email": invoice.customer.invoice_email,
                # The customer portal's pages of the invoice (apps/portal): the thank-you page, which
                # follows the payment until the webhook has recorded it, and the invoice itself.
                "success_url": portal_url(invoice.tenant, "invoice-paid", pk=invoice.pk),
                "cancel_url": portal_url(invoice.tenant, "invoice-paid", pk=invoice.pk) + "?cancelled=1",
            },
            options=options,
        )
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe refused the request: {exc.user_message or exc}") from exc
    CheckoutSession.objects.get_or_create(
        provider="stripe", session_id=session.id,
        defaults={"tenant_id": invoice.tenant_id, "invoice": invoice, "amount": invoice.amount_due,
                  "currency": invoice.currency, "url": session.url, "account": account,
                  "application_fee": from_minor_units(fee, invoice.currency)},
    )  # fmt: skip
    return {"provider": "stripe", "id": session.id, "url": session.url, "expires_at": session.expires_at}


def checkout_session(session_id: str, *, client: stripe.StripeClient | None = None, account: str = ""):
    """Stripe's view of one Checkout session now, in the account it was made in (raises ``stripe.StripeError``)."""
    options = {"stripe_account": account} if account else {}
    return (client or _client()).v1.checkout.sessions.retrieve(session_id, options=options)


def client() -> stripe.StripeClient:
    """One client for several calls (the reconciler's); refuses (409) when Stripe is not configured."""
    return _client()


def refund(*, payment: Payment, amount: Decimal) -> str:
    """A refund in the account the money went to. On a connected account the platform's fee is given
    back in proportion (``refund_application_fee``): the platform keeps no fee on money returned."""
    if not payment.provider_ref:
        raise Conflict("This Stripe payment has no payment intent to refund.")
    params: dict = {"payment_intent": payment.provider_ref, "amount": to_minor_units(amount, payment.currency)}
    options: dict = {"idempotency_key": f"refund-{payment.pk}-{payment.refunded_amount}-{amount}"}
    if payment.provider_account:
        params["refund_application_fee"] = True
        options["stripe_account"] = payment.provider_account
    try:
        result = _client().v1.refunds.create(params=params, options=options)
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe refused the refund: {exc.user_message or exc}") from exc
    return result.id


# --- Connect: the tenant's own account ----------------------------------------------------------


def account_create(*, tenant_id, account_type: str, email: str = "", country: str = "", attempt: str = "first"):
    """A new connected account for the tenant (Express or Standard), filled in by its owner on
    Stripe's onboarding page (``account_link``). ``attempt`` names this connection (a reconnection after
    a disconnect is another), so a retried request gets the same account and a new connection a new one."""
    params: dict = {"type": account_type, "metadata": {"mpanel_tenant_id": str(tenant_id)}}
    if email:
        params["email"] = email
    if country:
        params["country"] = country
    if account_type == "express":
        params["capabilities"] = {"card_payments": {"requested": True}, "transfers": {"requested": True}}
    try:
        return _client().v1.accounts.create(
            params=params, options={"idempotency_key": f"connect-{tenant_id}-{attempt}-{account_type}"}
        )
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe refused to create the account: {exc.user_message or exc}") from exc


def account_retrieve(account_id: str):
    """A connected account as Stripe sees it now (a 404 there: not connected to this platform)."""
    try:
        return _client().v1.accounts.retrieve(account_id)
    except stripe.InvalidRequestError as exc:
        raise Conflict(
            f"Stripe knows no account {account_id} connected to this platform.", code="stripe_account_unknown"
        ) from exc
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe refused the request: {exc.user_message or exc}") from exc


def account_link(*, account_id: str, refresh_url: str, return_url: str):
    """A one-time onboarding link (Stripe's Account Link, valid a few minutes)."""
    try:
        return _client().v1.account_links.create(
            params={"account": account_id, "refresh_url": refresh_url, "return_url": return_url,
                    "type": "account_onboarding"},
        )  # fmt: skip
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe refused the onboarding link: {exc.user_message or exc}") from exc


# --- saved cards (SetupIntents) and off-session charges, on the connected account --------------


def customer_create(*, account: str, customer_id, email: str, name: str):
    """The Stripe Customer of one of the tenant's customers on its account (once: the key is the pair)."""
    try:
        return _client().v1.customers.create(
            params={"email": email or None, "name": name[:250],
                    "metadata": {"mpanel_customer_id": str(customer_id)}},
            options={"stripe_account": account, "idempotency_key": f"customer-{customer_id}-{account}"},
        )  # fmt: skip
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe refused to create the customer: {exc.user_message or exc}") from exc


def setup_checkout(
    *, account: str, stripe_customer: str, metadata: dict, success_url: str, cancel_url: str, attempt: str
) -> dict:
    """A hosted Checkout page in ``setup`` mode: the customer enters a card on Stripe's page and Stripe
    saves it for later (a SetupIntent, confirmed by ``setup_intent.succeeded``). No card data passes here."""
    try:
        session = _client().v1.checkout.sessions.create(
            params={
                "mode": "setup",
                "customer": stripe_customer,
                "payment_method_types": ["card"],
                "metadata": metadata,
                "setup_intent_data": {"metadata": metadata},
                "success_url": success_url,
                "cancel_url": cancel_url,
            },
            options={"stripe_account": account, "idempotency_key": f"setup-{stripe_customer}-{attempt}"},
        )
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe refused the request: {exc.user_message or exc}") from exc
    return {"provider": "stripe", "id": session.id, "url": session.url, "expires_at": session.expires_at}


def payment_method_retrieve(*, account: str, payment_method: str) -> dict:
    """A saved payment method as Stripe holds it (its card's brand, last four digits and expiry)."""
    try:
        pm = _client().v1.payment_methods.retrieve(payment_method, options={"stripe_account": account})
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe could not show the payment method: {exc.user_message or exc}") from exc
    return pm.to_dict() if hasattr(pm, "to_dict") else dict(pm)


def payment_method_detach(*, account: str, payment_method: str) -> None:
    """Detach a card from its Stripe Customer: it can never be charged again. One Stripe no longer knows
    (detached already) counts as done."""
    try:
        _client().v1.payment_methods.detach(payment_method, options={"stripe_account": account})
    except stripe.InvalidRequestError as exc:
        if getattr(exc, "code", "") not in ("resource_missing", "payment_method_unexpected_state"):
            raise ProviderError(f"Stripe refused to remove the card: {exc.user_message or exc}") from exc
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe refused to remove the card: {exc.user_message or exc}") from exc


class OffSessionResult:
    """What Stripe answered to an off-session charge: the payment intent's id and status, or the
    card's refusal (``code``: ``authentication_required``, ``card_declined``, …)."""

    def __init__(self, *, intent: str = "", status: str = "", amount_received: int = 0, code: str = "",
                 message: str = "") -> None:  # fmt: skip
        self.intent, self.status, self.amount_received = intent, status, amount_received
        self.code, self.message = code, message


def charge_off_session(
    *, account: str, stripe_customer: str, payment_method: str, amount_minor: int, currency: str, fee: int,
    metadata: dict, idempotency_key: str, description: str,
) -> OffSessionResult:  # fmt: skip
    """Charge a saved card while the customer is away (a renewal): a PaymentIntent confirmed at once with
    ``off_session``. The idempotency key makes a retried request the same charge. A card that needs its
    holder (3-D Secure) or is declined answers a ``CardError``: returned as a refusal, not raised."""
    params: dict = {
        "amount": amount_minor, "currency": currency.lower(), "customer": stripe_customer,
        "payment_method": payment_method, "off_session": True, "confirm": True, "metadata": metadata,
        "description": description[:1000],
    }  # fmt: skip
    if fee > 0:
        params["application_fee_amount"] = fee
    try:
        intent = _client().v1.payment_intents.create(
            params=params, options={"stripe_account": account, "idempotency_key": idempotency_key}
        )
    except stripe.CardError as exc:
        error = getattr(exc, "error", None)
        pi = getattr(error, "payment_intent", None) if error is not None else None
        intent_id = (pi.get("id") if isinstance(pi, dict) else getattr(pi, "id", "")) or ""
        return OffSessionResult(intent=str(intent_id), status="failed", code=str(exc.code or "card_declined"),
                                message=str(exc.user_message or "The card was declined."))  # fmt: skip
    except stripe.StripeError as exc:
        raise ProviderError(f"Stripe refused the charge: {exc.user_message or exc}") from exc
    return OffSessionResult(intent=intent.id, status=str(intent.status),
                            amount_received=int(getattr(intent, "amount_received", 0) or 0))  # fmt: skip
