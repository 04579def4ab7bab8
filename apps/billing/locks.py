"""The order in which billing takes row locks inside one transaction, written once.

Every service that locks more than one kind of row takes them in this order (and several rows of
one kind by primary key), so two transactions never wait for each other in a circle:

    1. WebhookEvent            the provider delivery being applied (``webhooks.process``)
    2. Subscription, by pk     a subscription's own changes; the billing run's claim; the
                               subscriptions billed on an invoice (``lock_invoice`` takes them first)
    3. Invoice
    4. Payment                 a provider payment looked up by reference; the payment refunded
    5. NumberSequence          the number of the invoice or credit note being issued (``numbering``)
    6. Customer, by pk         the credit balance read before credit is applied (and any write that
                               must see it unchanged)
    7. CardCharge              a renewal charged on a saved card (``services.cards``): its job locks
                               it alone and records the payment after releasing it; a webhook about
                               its payment intent updates it after the payment (last)

The invoice hooks (``hooks.PAID``/``VOIDED``) run last, in the same transaction: they lock rows of
their own apps after these (``orders.Order``; ``catalog.Product`` to give stock back). A new
subscription or an accepted order takes the product's stock (``catalog.Product``) before its first
invoice is numbered; the rows it bills are new, so no other transaction can hold them.

So: paying an invoice is subscriptions → invoice → payment → customer; issuing one (and applying
the customer's credit) is subscriptions → invoice → number sequence → customer; a credit note is
subscriptions → invoice → number sequence; a refund is subscriptions → invoice → payment → number
sequence; the billing run's renewal is subscriptions → number sequence → customers
(``tests/billing/test_billing_locks.py`` pins these).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apps.customers.models import Customer

from .models import Invoice, NumberSequence, Payment, Subscription, SubscriptionCharge, WebhookEvent


def _pk(obj: Any) -> Any:
    return getattr(obj, "pk", obj)


def lock_webhook_event(event: WebhookEvent | Any) -> WebhookEvent:
    return WebhookEvent.objects.select_for_update().get(pk=_pk(event))


def lock_pending_webhook_events(ids: Iterable[Any]) -> list[WebhookEvent]:
    """Several events still to apply, in pk order, skipping any another worker holds right now (it
    applies them): a batch never waits on an event row, so it cannot wait in a circle on them."""
    return list(
        WebhookEvent.objects.select_for_update(skip_locked=True)
        .filter(pk__in=list(ids), status=WebhookEvent.Status.RECEIVED)
        .order_by("pk")
    )


def lock_subscription(sub: Subscription | Any) -> Subscription:
    return Subscription.all_tenants.select_for_update().select_related("product", "customer").get(pk=_pk(sub))


def lock_subscriptions(ids: Iterable[Any]) -> list[Subscription]:
    """Several subscriptions, in pk order (what is gone is not returned)."""
    return list(Subscription.all_tenants.select_for_update().filter(pk__in=list(ids)).order_by("pk"))


def lock_invoice(invoice: Invoice | Any) -> Invoice:
    """The invoice, after the subscriptions billed on it: a payment or credit that settles it goes on
    to change them (``subscriptions.activate_paid``), and they come before the invoice."""
    pk = _pk(invoice)
    billed = SubscriptionCharge.all_tenants.filter(invoice_line__invoice_id=pk).values("subscription_id")
    list(Subscription.all_tenants.select_for_update().filter(pk__in=billed).order_by("pk").values_list("pk"))
    return Invoice.all_tenants.select_for_update().get(pk=pk)


def lock_payment(payment: Payment | Any) -> Payment:
    return Payment.all_tenants.select_for_update().get(pk=_pk(payment))


def lock_payment_by_ref(*, tenant_id: Any, method: str, provider_ref: str) -> Payment | None:
    """A provider's payment by its reference, unique per tenant (the tenant leads the unique index)."""
    return (
        Payment.all_tenants.select_for_update()
        .filter(tenant_id=tenant_id, method=method, provider_ref=provider_ref)
        .first()
    )


def lock_payments_by_refs(*, tenant_id: Any, refs: Iterable[str]) -> set[tuple[str, str]]:
    """The (method, reference) of the tenant's payments with any of these references, locked in pk order
    (``lock_payment_by_ref`` for several at once: ``payments.payment_record_many``)."""
    return set(
        Payment.all_tenants.select_for_update()
        .filter(tenant_id=tenant_id, provider_ref__in=list(refs))
        .order_by("pk")
        .values_list("method", "provider_ref")
    )


def lock_number_sequence(*, tenant_id: Any, series: str, period: str) -> NumberSequence | None:
    return NumberSequence.objects.select_for_update().filter(tenant_id=tenant_id, series=series, period=period).first()


def lock_customer(customer: Customer | Any) -> Customer:
    """Serialises every change of one customer's balance (issue, pay, credit) on the customer row."""
    return Customer.all_tenants.select_for_update().get(pk=_pk(customer))


def lock_customers(ids: Iterable[Any]) -> dict[Any, Customer]:
    """Several customers, in pk order, by pk."""
    return {c.pk: c for c in Customer.all_tenants.select_for_update().filter(pk__in=list(ids)).order_by("pk")}


def claim_subscriptions(queryset):
    """The billing run's claim: subscriptions no other transaction holds (SKIP LOCKED), in pk order."""
    return queryset.select_for_update(skip_locked=True, of=("self",)).order_by("pk")
