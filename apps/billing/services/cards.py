"""Saved cards and the renewals charged on them, on the tenant's own Stripe account (Connect).

A customer saves a card on Stripe's hosted Checkout page in ``setup`` mode (a SetupIntent on the
tenant's connected account, for the Stripe Customer that stands for it there, made once). The card
is ours to list only when Stripe says so: ``setup_intent.succeeded``, bound to its tenant by the
event's ``account`` (``webhooks``), and only for a Stripe Customer of that tenant on that account.
``payment_method.updated`` / ``.detached`` keep the list true. No card data ever passes here: Stripe
keeps the card, we keep its brand, last four digits and expiry.

When an invoice is issued (by hand or by the billing run) for a customer with a default card on a
tenant whose account takes charges, a job charges it off-session (``invoice.autocharge``), once per
invoice (``CardCharge``, and an idempotency key derived from the invoice for Stripe). A success is
recorded through ``payments.payment_record`` with the payment intent as its key, the path the webhook
takes too, so the job's answer and ``payment_intent.succeeded`` record one payment. A refusal
(``authentication_required``, ``card_declined``) leaves the invoice open, dunning goes on, and the
customer gets an email with the invoice's pay link (``notifications.INVOICE_LINKS``).

A tenant offers cards when it has a connected account that takes charges and offers ``stripe`` among
its payment methods (``BillingSettings.payment_methods``: taking ``stripe`` out also stops the
automatic charges).
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict
from apps.jobs.services import job_enqueue
from apps.tenancy.scoping import tenant_scope

from ..amounts import from_minor_units, to_minor_units
from ..models import (
    CardCharge,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    SavedPaymentMethod,
    StripeConnection,
    StripeCustomer,
)
from . import payments, stripe_gateway, tenant_settings
from .hooks import ISSUED
from .notifications import notify_invoice

log = logging.getLogger(__name__)

AUTOCHARGE_JOB = "invoice.autocharge"
NOT_OFFERED = "cards_not_offered"


# --- is it offered ----------------------------------------------------------------------------


def cards_account(tenant) -> StripeConnection | None:
    """The connected account cards are saved on and charged from, or None when the tenant offers no
    saved cards (no account, one that cannot take charges yet, Stripe not offered or not configured)."""
    tenant_id = getattr(tenant, "pk", tenant)
    if not settings.STRIPE_API_KEY:
        return None
    connection = stripe_gateway.live_connection(tenant_id)
    if connection is None or not connection.charges_enabled:
        return None
    if PaymentMethod.STRIPE not in tenant_settings.settings_of(tenant_id).payment_methods:
        return None
    return connection


def require_cards(tenant) -> StripeConnection:
    connection = cards_account(tenant)
    if connection is None:
        raise Conflict("Saved cards are not offered here: pay each invoice by another method.", code=NOT_OFFERED)
    return connection


def cards_of(customer):
    """The customer's saved cards, the default first."""
    return SavedPaymentMethod.all_tenants.filter(tenant_id=customer.tenant_id, customer=customer)


def card_of(customer, pk) -> SavedPaymentMethod | None:
    """One of the customer's cards (another customer's, in this tenant or not: None)."""
    return cards_of(customer).filter(pk=pk).first()


# --- saving a card ----------------------------------------------------------------------------


def stripe_customer_for(customer, connection: StripeConnection) -> StripeCustomer:
    """The Stripe Customer of ``customer`` on the tenant's account: made at Stripe once (an idempotency
    key per customer and account), stored, and reused for every card."""
    found = StripeCustomer.all_tenants.filter(customer=customer, account=connection.account_id).first()
    if found is not None:
        return found
    made = stripe_gateway.customer_create(
        account=connection.account_id, customer_id=customer.pk, email=customer.invoice_email, name=customer.name
    )
    try:
        with transaction.atomic():
            return StripeCustomer.all_tenants.create(
                tenant_id=customer.tenant_id, customer=customer, account=connection.account_id,
                stripe_customer_id=made.id,
            )  # fmt: skip
    except IntegrityError:  # a concurrent first card: the same Stripe Customer (the same idempotency key)
        return StripeCustomer.all_tenants.get(customer=customer, account=connection.account_id)


def setup_start(*, customer, success_url: str, cancel_url: str, actor=None) -> dict:
    """A Stripe Checkout page (``mode=setup``) where the customer enters a card to save. The card is
    listed once Stripe's ``setup_intent.succeeded`` arrives."""
    connection = require_cards(customer.tenant_id)
    stripe_customer = stripe_customer_for(customer, connection)
    metadata = {"mpanel_customer_id": str(customer.pk), "mpanel_tenant_id": str(customer.tenant_id),
                "mpanel_purpose": "save_card"}  # fmt: skip
    link = stripe_gateway.setup_checkout(
        account=connection.account_id, stripe_customer=stripe_customer.stripe_customer_id, metadata=metadata,
        success_url=success_url, cancel_url=cancel_url, attempt=uuid.uuid4().hex,
    )  # fmt: skip
    with transaction.atomic():
        after = {"checkout_session": link["id"], "account": connection.account_id}
        audit.record(action="payment_method.setup", obj=customer, tenant=customer.tenant_id, after=after,
                     **audit.by(actor))  # fmt: skip
    return link


def _card_fields(pm: dict) -> dict:
    """What we keep of a Stripe PaymentMethod: its type, and a card's brand, last four and expiry."""
    card = pm.get("card") if isinstance(pm.get("card"), dict) else {}
    last4 = str(card.get("last4") or "")
    month, year = card.get("exp_month"), card.get("exp_year")
    return {
        "type": str(pm.get("type") or "card")[:32],
        "brand": str(card.get("brand") or "")[:32],
        "last4": last4 if len(last4) == 4 and last4.isdigit() else "",
        "exp_month": month if isinstance(month, int) and 1 <= month <= 12 else None,
        "exp_year": year if isinstance(year, int) and 2000 <= year <= 2200 else None,
    }


def _id_of(value) -> str:
    """A Stripe reference, expanded (an object) or not (its id)."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value or "")


@transaction.atomic
def card_saved(*, tenant_id, account: str, setup_intent: dict) -> SavedPaymentMethod | None:
    """``setup_intent.succeeded`` on ``account`` (bound to ``tenant_id`` by the webhook): list the card
    it saved, for the customer whose Stripe Customer it names, in that tenant and account only. None:
    nothing of ours (another customer's, another tenant's, a SetupIntent we did not start)."""
    stripe_customer = (
        StripeCustomer.all_tenants.select_related("customer")
        .filter(tenant_id=tenant_id, account=account, stripe_customer_id=_id_of(setup_intent.get("customer")))
        .first()
    )
    pm_id = _id_of(setup_intent.get("payment_method"))
    if stripe_customer is None or not pm_id.startswith("pm_"):
        return None
    metadata = setup_intent.get("metadata") if isinstance(setup_intent.get("metadata"), dict) else {}
    named = metadata.get("mpanel_customer_id")
    if named and named != str(stripe_customer.customer_id):
        return None  # the metadata names another customer than the Stripe Customer: trust neither
    expanded = setup_intent.get("payment_method")
    pm = expanded if isinstance(expanded, dict) and expanded.get("card") else None
    pm = pm or stripe_gateway.payment_method_retrieve(account=account, payment_method=pm_id)
    if _id_of(pm.get("customer")) not in ("", stripe_customer.stripe_customer_id):
        return None
    customer = stripe_customer.customer
    with tenant_scope(customer.tenant):
        existing = (
            SavedPaymentMethod.all_tenants.select_for_update()
            .filter(account=account, stripe_payment_method_id=pm_id)
            .first()
        )
        if existing is not None:
            return existing if existing.customer_id == customer.pk else None
        # The first card is the default (one default per customer: the customer's cards are locked).
        held = list(SavedPaymentMethod.all_tenants.select_for_update().filter(customer=customer).order_by("pk"))
        card = SavedPaymentMethod.all_tenants.create(
            tenant_id=customer.tenant_id, customer=customer, account=account,
            stripe_customer_id=stripe_customer.stripe_customer_id, stripe_payment_method_id=pm_id,
            is_default=not any(c.is_default for c in held), **_card_fields(pm),
        )  # fmt: skip
        audit.created(card, "payment_method.add", actor=audit.SYSTEM)
    return card


@transaction.atomic
def card_updated(*, tenant_id, account: str, payment_method: dict) -> SavedPaymentMethod | None:
    """``payment_method.updated``: a new expiry (the card was renewed by its bank), a new brand label."""
    card = (
        SavedPaymentMethod.all_tenants.select_for_update()
        .filter(tenant_id=tenant_id, account=account, stripe_payment_method_id=_id_of(payment_method))
        .first()
    )
    if card is None:
        return None
    with audit.change(card, "payment_method.update", actor=audit.SYSTEM) as event:
        fields = {k: v for k, v in _card_fields(payment_method).items() if v not in ("", None)}
        changed = any(getattr(card, k) != v for k, v in fields.items())
        for key, value in fields.items():
            setattr(card, key, value)
        card.save()
        if not changed:
            event.skip()
    return card


def _promote_next(customer_id, tenant_id) -> None:
    """After the default card went, the newest other card becomes the default (renewals go on)."""
    rest = SavedPaymentMethod.all_tenants.filter(customer_id=customer_id, tenant_id=tenant_id).order_by("-created_at")
    nxt = rest.first()
    if nxt is not None and not rest.filter(is_default=True).exists():
        with audit.change(nxt, "payment_method.set_default", actor=audit.SYSTEM):
            nxt.is_default = True
            nxt.save()


def _drop(card: SavedPaymentMethod, action: str, actor) -> None:
    was_default = card.is_default
    audit.deleted(card, action, actor=actor)
    card.delete()
    if was_default:
        _promote_next(card.customer_id, card.tenant_id)


@transaction.atomic
def card_detached(*, tenant_id, account: str, payment_method: dict) -> bool:
    """``payment_method.detached``: the card is gone at Stripe (removed there, or by us): gone here too."""
    card = (
        SavedPaymentMethod.all_tenants.select_for_update()
        .filter(tenant_id=tenant_id, account=account, stripe_payment_method_id=_id_of(payment_method))
        .first()
    )
    if card is None:
        return False
    _drop(card, "payment_method.detached", audit.SYSTEM)
    return True


def _lock_cards(customer_id) -> list[SavedPaymentMethod]:
    return list(SavedPaymentMethod.all_tenants.select_for_update().filter(customer_id=customer_id).order_by("pk"))


@transaction.atomic
def card_set_default(*, card: SavedPaymentMethod, actor=None) -> SavedPaymentMethod:
    """The card renewals are charged on (one per customer)."""
    held = {c.pk: c for c in _lock_cards(card.customer_id)}
    card = held.get(card.pk)
    if card is None:
        raise Conflict("This card was removed.", code="payment_method_gone")
    for other in held.values():
        if other.is_default and other.pk != card.pk:
            with audit.change(other, "payment_method.unset_default", actor=actor):
                other.is_default = False
                other.save()
    if not card.is_default:
        with audit.change(card, "payment_method.set_default", actor=actor):
            card.is_default = True
            card.save()
    return card


@transaction.atomic
def card_remove(*, card: SavedPaymentMethod, actor=None) -> None:
    """Remove a saved card: detached at Stripe first (it can never be charged again), then from the list.
    A card on an account the tenant no longer has connected cannot be charged by us any more: it is
    only taken off the list."""
    held = {c.pk: c for c in _lock_cards(card.customer_id)}
    card = held.get(card.pk)
    if card is None:
        return
    connection = stripe_gateway.live_connection(card.tenant_id)
    if connection is not None and connection.account_id == card.account and settings.STRIPE_API_KEY:
        stripe_gateway.payment_method_detach(account=card.account, payment_method=card.stripe_payment_method_id)
    _drop(card, "payment_method.remove", actor)


# --- renewals charged on the default card ----------------------------------------------------


@ISSUED.register()
def autocharge_issued(invoices: list[Invoice]) -> None:
    """Queue a charge on the default card of each customer billed, where the tenant offers cards: one
    query for the batch, one ``CardCharge`` and one job per invoice (the job's key is the invoice's)."""
    due = [inv for inv in invoices if inv.status == InvoiceStatus.OPEN and inv.amount_due > 0]
    if not due:
        return
    by_tenant: dict = {}
    for inv in due:
        by_tenant.setdefault(inv.tenant_id, []).append(inv)
    for tenant_id, group in by_tenant.items():
        connection = cards_account(tenant_id)
        if connection is None:
            continue
        defaults = {
            card.customer_id: card
            for card in SavedPaymentMethod.all_tenants.filter(
                tenant_id=tenant_id,
                account=connection.account_id,
                is_default=True,
                customer_id__in={inv.customer_id for inv in group},
            )
        }
        for inv in group:
            card = defaults.get(inv.customer_id)
            if card is None:
                continue
            charge, made = CardCharge.all_tenants.get_or_create(
                invoice=inv,
                defaults={"tenant_id": tenant_id, "payment_method": card, "account": card.account,
                          "stripe_payment_method_id": card.stripe_payment_method_id, "card_label": str(card)[:64],
                          "amount": inv.amount_due, "currency": inv.currency},
            )  # fmt: skip
            if made:
                job_enqueue(tenant=connection.tenant, type=AUTOCHARGE_JOB,
                            payload={"charge": str(charge.pk), "invoice": str(inv.pk)},
                            key=f"autocharge-{inv.pk}", obj=inv, actor=audit.SYSTEM)  # fmt: skip


def _lock_charge(charge_id) -> CardCharge:
    return CardCharge.all_tenants.select_for_update().select_related("invoice", "tenant").get(pk=charge_id)


def _record_success(charge: CardCharge) -> Payment:
    """The payment, through the path every Stripe payment takes (its key: the payment intent), so the
    job's answer and the webhook's ``payment_intent.succeeded`` record it once."""
    invoice = Invoice.all_tenants.select_related("tenant", "customer").get(pk=charge.invoice_id)
    with tenant_scope(invoice.tenant):
        return payments.payment_record(
            invoice=invoice, amount=charge.amount, currency=charge.currency, method=PaymentMethod.STRIPE,
            provider_ref=charge.payment_intent, reference=charge.payment_intent, provider_account=charge.account,
        )  # fmt: skip


def _record_failure(charge: CardCharge) -> None:
    invoice = Invoice.all_tenants.select_related("tenant").get(pk=charge.invoice_id)
    with tenant_scope(invoice.tenant):
        payments.payment_record_failure(
            invoice=invoice, amount=charge.amount, method=PaymentMethod.STRIPE, provider_ref=charge.payment_intent,
            reason=f"{charge.card_label}: {charge.failure_message}"[:500], event_time=charge.attempted_at,
        )  # fmt: skip


def autocharge_run(charge_id) -> dict:
    """The job: charge the invoice's amount on the card, off-session, once.

    Three steps, so that no row lock is held while Stripe answers and the charge row is never locked
    before the billing rows it leads to (apps/billing/locks.py): (1) under the charge's lock, check it
    is still due and fix the amount (a retry sends the same request); (2) ask Stripe, with the key
    derived from the invoice (a retry after a lost answer gets the same payment intent); (3) under the
    lock again, keep the answer once (a second run finds it kept), then record the payment or the
    refusal outside it."""
    with transaction.atomic():
        charge = _lock_charge(charge_id)
        if charge.status != CardCharge.Status.PENDING:
            return _finish(charge)
        invoice = Invoice.all_tenants.get(pk=charge.invoice_id)
        connection = stripe_gateway.live_connection(charge.tenant_id)
        reason = ""
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE) or invoice.amount_due <= 0:
            reason = "Nothing is due on the invoice any more."
        elif charge.payment_method_id is None:
            reason = "The card was removed before it was charged."
        elif connection is None or connection.account_id != charge.account or not connection.charges_enabled:
            reason = "The tenant's Stripe account cannot take charges."
        elif cards_account(charge.tenant_id) is None:
            reason = "The tenant no longer offers card payments."
        if reason:
            with audit.change(charge, "card_charge.skip", actor=audit.SYSTEM):
                charge.status, charge.failure_message = CardCharge.Status.SKIPPED, reason
                charge.save()
            return _finish(charge)
        if charge.attempted_at is None:
            charge.amount, charge.currency = invoice.amount_due, invoice.currency
            minor = to_minor_units(charge.amount, charge.currency)
            fee = stripe_gateway.application_fee(minor, connection.platform_fee_percent)
            charge.application_fee = from_minor_units(fee, charge.currency)  # kept: a retry sends the same
            charge.attempted_at = timezone.now()
            charge.save()
    minor = to_minor_units(charge.amount, charge.currency)
    fee = to_minor_units(charge.application_fee, charge.currency)
    stripe_customer = StripeCustomer.all_tenants.get(customer_id=invoice.customer_id, account=charge.account)
    result = stripe_gateway.charge_off_session(
        account=charge.account, stripe_customer=stripe_customer.stripe_customer_id,
        payment_method=charge.stripe_payment_method_id, amount_minor=minor, currency=charge.currency, fee=fee,
        metadata={"mpanel_invoice_id": str(invoice.pk), "mpanel_tenant_id": str(invoice.tenant_id),
                  "mpanel_card_charge": str(charge.pk)},
        idempotency_key=charge.idempotency_key, description=f"Invoice {invoice.number}",
    )  # fmt: skip
    with transaction.atomic():
        charge = _lock_charge(charge_id)
        if charge.status == CardCharge.Status.PENDING:
            _keep_answer(charge, result)
    return _finish(charge)


def _keep_answer(charge: CardCharge, result: stripe_gateway.OffSessionResult) -> None:
    with audit.change(charge, "card_charge.attempt", actor=audit.SYSTEM):
        charge.payment_intent = result.intent[:255]
        if result.status == "succeeded":
            charge.status = CardCharge.Status.SUCCEEDED
        elif result.status == "processing":
            charge.status = CardCharge.Status.PROCESSING  # the webhook says how it ends
        else:
            code = result.code or ("authentication_required" if result.status == "requires_action" else result.status)
            charge.status = CardCharge.Status.FAILED
            charge.failure_code = code[:64]
            charge.failure_message = (result.message or "The card could not be charged.")[:500]
        charge.save()
    if charge.status == CardCharge.Status.FAILED:
        _tell_the_customer(charge)


def _tell_the_customer(charge: CardCharge) -> None:
    """Once, when the charge turns failed: the email with the invoice's pay link (after the commit)."""
    notify_invoice(charge.invoice, "card_failed")


def _finish(charge: CardCharge) -> dict:
    """Record what the kept answer means (idempotent: a second run records nothing twice)."""
    if charge.status == CardCharge.Status.SUCCEEDED and charge.payment_intent:
        _record_success(charge)
    elif charge.status == CardCharge.Status.FAILED and charge.payment_intent:
        _record_failure(charge)  # the attempt, in the invoice's payments (failed)
    return {"charge": str(charge.pk), "invoice": str(charge.invoice_id), "status": charge.status,
            "payment_intent": charge.payment_intent, "failure_code": charge.failure_code}  # fmt: skip


def charge_settled_by_webhook(*, tenant_id, payment_intent: str, succeeded: bool, message: str = "") -> None:
    """A ``payment_intent.succeeded``/``payment_failed`` event about a charge we made: the row follows
    (a charge Stripe was still processing ends here). Runs after the payment is recorded, so the charge
    row is locked last (apps/billing/locks.py)."""
    if not payment_intent:
        return
    charge = (
        CardCharge.all_tenants.select_for_update().select_related("invoice")
        .filter(tenant_id=tenant_id, payment_intent=payment_intent)
        .exclude(status__in=(CardCharge.Status.SUCCEEDED, CardCharge.Status.SKIPPED))
        .first()
    )  # fmt: skip
    if charge is None or (not succeeded and charge.status == CardCharge.Status.FAILED):
        return
    with audit.change(charge, "card_charge.settle", actor=audit.SYSTEM):
        if succeeded:
            charge.status = CardCharge.Status.SUCCEEDED
        else:
            charge.status = CardCharge.Status.FAILED
            charge.failure_code = charge.failure_code or "payment_failed"
            charge.failure_message = (message or "The card could not be charged.")[:500]
        charge.save()
    if not succeeded:
        _tell_the_customer(charge)
