"""Payments and refunds.

A payment is applied to its invoice up to the amount due; any excess becomes customer credit.
Money that arrives from a provider for an invoice that can no longer take it (paid, void) is
never refused: it is kept as customer credit. A manual payment on such an invoice is a 409.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.money import parse_amount
from apps.tenancy.scoping import ScopeError, current_tenant

from ..locks import lock_customer, lock_invoice, lock_payment, lock_payment_by_ref, lock_payments_by_refs
from ..models import CreditTransaction, Invoice, InvoiceStatus, Payment, PaymentMethod, PaymentStatus
from . import stripe_gateway, tenant_settings
from .credit_notes import credit_note_for_refund
from .hooks import invoice_paid
from .invoices import mark_paid_if_settled
from .notifications import notify_invoice

ZERO = Decimal(0)


def _checked_amount(amount: Decimal, currency: str) -> Decimal:
    return parse_amount(amount, currency, positive=True)


def checkout_start(*, invoice: Invoice) -> dict:
    """A Stripe Checkout link for the invoice, where the tenant offers card payments (its connected
    account, ``stripe_gateway.checkout_link``); the payment is recorded when Stripe says so."""
    tenant_settings.check_method_offered(invoice.tenant_id, PaymentMethod.STRIPE)
    return stripe_gateway.checkout_link(invoice=invoice)


@transaction.atomic
def payment_record(
    *,
    invoice: Invoice,
    amount: Decimal,
    method: str,
    currency: str | None = None,
    reference: str = "",
    provider_ref: str | None = None,
    received_at: datetime | None = None,
    event_time: datetime | None = None,
    actor=None,
    provider_account: str = "",
) -> Payment:
    """Record money received. Idempotent by ``provider_ref`` for provider payments.

    ``provider_account``: the connected Stripe account the money went to (a refund goes back there)."""
    invoice = lock_invoice(invoice)
    from_provider = method in (PaymentMethod.STRIPE, PaymentMethod.GENERIC)
    currency = (currency or invoice.currency).upper()
    if currency != invoice.currency:
        raise InvalidInput(f"This invoice is in {invoice.currency}, not {currency}.", field="currency")
    amount = _checked_amount(amount, currency)

    payment = None
    if provider_ref:
        # References are unique per tenant (a generic one is the tenant's own text): another tenant's
        # payment with the same reference is not this one, and the tenant leads the unique index.
        payment = lock_payment_by_ref(tenant_id=invoice.tenant_id, method=method, provider_ref=provider_ref)
        if payment is not None and payment.status != PaymentStatus.FAILED:
            return payment  # the same provider payment again: nothing twice
        if payment is not None and event_time and payment.provider_state_at and event_time < payment.provider_state_at:
            return payment  # an older event than the state we hold

    takes_money = invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
    if not takes_money and not from_provider:
        raise Conflict(f"A {invoice.status} invoice cannot take a payment.")
    # Its balance takes the excess (the order: ..locks). Locked by id and handed to the rows below, so
    # neither the customer nor its tenant is read again (an invoice's customer is of its tenant).
    customer = lock_customer(invoice.customer_id)
    with audit.change(invoice, "invoice.payment") as paid:  # recorded after the payment's own event
        applied = min(amount, invoice.amount_due) if takes_money else ZERO
        excess = amount - applied

        fields = dict(
            invoice=invoice,
            customer=customer,
            amount=amount,
            currency=currency,
            method=method,
            status=PaymentStatus.SUCCEEDED,
            reference=reference[:200],
            applied_to_invoice=applied,
            credited_to_balance=excess,
            failure_reason="",
            received_at=received_at or timezone.now(),
            provider_state_at=event_time,
            provider_account=provider_account,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        if payment is None:
            payment = Payment.objects.create(tenant_id=invoice.tenant_id, provider_ref=provider_ref, **fields)
        else:
            for key, value in fields.items():
                setattr(payment, key, value)
            payment.save()

        if excess > 0:
            CreditTransaction.objects.create(
                tenant_id=invoice.tenant_id, customer=customer, currency=currency, amount=excess,
                kind=CreditTransaction.Kind.OVERPAYMENT, invoice=invoice, payment=payment,
                description=f"Over-payment on {invoice.number or 'a draft invoice'}",
            )  # fmt: skip
        newly_paid = False
        if applied > 0:
            invoice.amount_paid += applied
            invoice.amount_due -= applied
            newly_paid = mark_paid_if_settled(invoice)
            invoice.save()
        audit.created(payment, "payment.create")
        if applied == 0:
            paid.skip()  # the invoice did not change
    if newly_paid:
        notify_invoice(invoice, "paid")
        invoice_paid(invoice)
    return payment


@dataclass(frozen=True)
class ProviderPayment:
    """One provider payment for ``payment_record_many``: what a webhook hands ``payment_record``."""

    amount: Decimal
    currency: str
    method: str
    provider_ref: str
    reference: str
    event_time: datetime | None = None
    provider_account: str = ""


PROVIDER_METHODS = (PaymentMethod.STRIPE, PaymentMethod.GENERIC)


@transaction.atomic
def payment_record_many(*, invoice: Invoice, entries: list[ProviderPayment]) -> list[Payment]:
    """Record the leading ``entries`` that ``payment_record`` would record one by one, together: the
    invoice, the customer and the payments by reference locked once (the same order), the payment rows
    and their audit events (``payment.create`` then ``invoice.payment``, each with the invoice's figures
    before and after that payment, as ``payment_record`` writes them) inserted together, and one UPDATE
    of the invoice's paid and due amounts.

    Only entries whose outcome is plain are taken: a new reference (not stored, not twice among them),
    the invoice's currency, a valid amount below what is still due on an invoice that takes money. The
    first entry that is not (a repeat, an older state, a failure to record, a payment that settles the
    invoice or leaves credit: the paid hooks, the notification, the credit row) ends the run: the
    payments of the entries before it are answered (possibly none), and it and those after it are the
    caller's to record with ``payment_record``, in order."""
    invoice = lock_invoice(invoice)
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
        return []
    scoped = current_tenant()
    if scoped is not None and scoped.pk != invoice.tenant_id:
        raise ScopeError("A payment of another tenant cannot be saved in this scope.")
    due = invoice.amount_due
    taken: list[tuple[ProviderPayment, Decimal, str]] = []
    refs: set[tuple[str, str]] = set()
    for entry in entries:
        key = (entry.method, entry.provider_ref)
        if entry.method not in PROVIDER_METHODS or not entry.provider_ref or key in refs:
            break
        currency = (entry.currency or invoice.currency).upper()
        if currency != invoice.currency:
            break
        try:
            amount = _checked_amount(entry.amount, currency)
        except InvalidInput:
            break
        if amount >= due:
            break
        due -= amount
        refs.add(key)
        taken.append((entry, amount, currency))
    if not taken:
        return []
    # Locked like ``lock_payment_by_ref`` (after the invoice): a reference already stored ends the run there.
    held = lock_payments_by_refs(tenant_id=invoice.tenant_id, refs={ref for _method, ref in refs})
    for position, (entry, _amount, _currency) in enumerate(taken):
        if (entry.method, entry.provider_ref) in held:
            taken = taken[:position]
            break
    if not taken:
        return []
    customer = lock_customer(invoice.customer_id)
    now = timezone.now()
    rows: list[Payment] = []
    figures: list[tuple[dict, dict]] = []
    for entry, amount, currency in taken:
        before = audit.snapshot(invoice)
        invoice.amount_paid += amount
        invoice.amount_due -= amount
        figures.append((before, audit.snapshot(invoice)))
        payment = Payment(
            tenant_id=invoice.tenant_id, invoice=invoice, customer=customer, amount=amount, currency=currency,
            method=entry.method, status=PaymentStatus.SUCCEEDED, reference=entry.reference[:200],
            provider_ref=entry.provider_ref, applied_to_invoice=amount, credited_to_balance=ZERO, failure_reason="",
            received_at=now, provider_state_at=entry.event_time, provider_account=entry.provider_account,
        )  # fmt: skip
        payment.check_tenant_links()  # what ``save`` checks, from the rows at hand (no query)
        rows.append(payment)
    Payment.all_tenants.bulk_create(rows)
    invoice.save(update_fields=["amount_paid", "amount_due", "updated_at"])
    events = []
    for payment, (before, after) in zip(rows, figures, strict=True):
        events.append(audit.build(action="payment.create", obj=payment, after=audit.snapshot(payment)))
        events.append(audit.build(action="invoice.payment", obj=invoice, before=before, after=after))
    audit.record_many(events)
    return rows


@transaction.atomic
def payment_record_failure(
    *, invoice: Invoice, amount: Decimal, method: str, provider_ref: str, reason: str, event_time: datetime | None
) -> Payment:
    """A provider says a charge failed. Never overrides a newer or successful state."""
    existing = lock_payment_by_ref(tenant_id=invoice.tenant_id, method=method, provider_ref=provider_ref)
    if existing is not None:
        newer = existing.provider_state_at and event_time and event_time < existing.provider_state_at
        if existing.status != PaymentStatus.FAILED or newer:
            return existing
        existing.failure_reason = reason[:500]
        existing.provider_state_at = event_time
        existing.save(update_fields=["failure_reason", "provider_state_at", "updated_at"])
        return existing
    payment = Payment.objects.create(
        tenant_id=invoice.tenant_id, invoice=invoice, customer_id=invoice.customer_id,
        amount=parse_amount(amount, invoice.currency), currency=invoice.currency, method=method,
        status=PaymentStatus.FAILED, provider_ref=provider_ref, failure_reason=reason[:500],
        received_at=timezone.now(), provider_state_at=event_time,
    )  # fmt: skip
    audit.created(payment, "payment.failed")
    return payment


@transaction.atomic
def payment_refund(*, payment: Payment, amount: Decimal, reason: str = "", call_provider: bool = True):
    """Give money back from what a payment settled on its invoice.

    The invoice stays settled: its paid amount goes down and a credit note for the same amount is
    issued against it (the refund is the credit note's settlement), so issued figures never change.
    """
    invoice = lock_invoice(payment.invoice_id)  # before the payment (the order: ..locks)
    payment = lock_payment(payment)
    if payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED):
        raise Conflict(f"A {payment.status} payment cannot be refunded.")
    amount = _checked_amount(amount, payment.currency)
    refundable = payment.applied_to_invoice - payment.refunded_amount
    if amount > refundable:
        raise InvalidInput(f"At most {refundable} {payment.currency} of this payment can be refunded.", field="amount")
    if call_provider and payment.method == PaymentMethod.STRIPE:
        stripe_gateway.refund(payment=payment, amount=amount)
    with audit.change(payment, "payment.refund"):
        invoice.amount_paid -= amount
        invoice.amount_due += amount
        invoice.save()
        note = credit_note_for_refund(invoice=invoice, amount=amount, reason=reason or "Refund")
        payment.refunded_amount += amount
        payment.status = (
            PaymentStatus.REFUNDED
            if payment.refunded_amount == payment.applied_to_invoice
            else PaymentStatus.PARTIALLY_REFUNDED
        )
        payment.save()
    return note
