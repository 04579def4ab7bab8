"""Subscriptions: pending → active → past_due → suspended → cancelled, billed in advance per period.

Every change that touches a customer's services is a job (``subscription.*``) committed with
the change; a module that provides a product type registers a provisioner for it (CloudPods do),
and the job calls it. Suspensions remember why: a payment lifts one for non-payment, never one
made by staff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.catalog.pricing import quote
from apps.catalog.services import product_stock_take
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.money import quantize
from apps.common.registry import Registry
from apps.jobs.services import job_enqueue

from .. import periods
from ..locks import lock_subscription, lock_subscriptions
from ..models import (
    CreditTransaction,
    Invoice,
    InvoiceStatus,
    Subscription,
    SubscriptionCharge,
    SubscriptionStatus,
    SuspensionReason,
    UsageRecord,
)
from .charges import bill_subscriptions
from .hooks import PAID
from .invoices import invoice_void

# What a product type's subscription does on its infrastructure, by "<product type>.<action>"
# (action: activate | suspend | resume | cancel): a callable(subscription) -> dict. A module that
# provides a product type registers its callables: ``@PROVISIONERS.register("cloudpod_plan.activate")``.
PROVISIONERS: Registry[Callable] = Registry("subscription provisioner")
ACTIONS = ("activate", "suspend", "resume", "cancel")


# What a product type checks and applies when a subscription changes plan or quantity, in the
# change's transaction with the subscription locked: a callable(sub, product, quantity) that raises
# ``Conflict`` to refuse (hosting plans: a downgrade below what is in use). Keyed by the current
# product's type.
PLAN_CHANGES: Registry[Callable] = Registry("plan change hook")


def register_provisioner(product_type: str, **actions: Callable) -> None:
    """All of a product type's provisioners at once (``activate=…, suspend=…``): the same registry."""
    for action, fn in actions.items():
        if action not in ACTIONS:
            raise ValueError(f"Unknown subscription action {action!r}.")
        PROVISIONERS.register(f"{product_type}.{action}")(fn)


def provisioner_for(product_type: str, action: str) -> Callable | None:
    return PROVISIONERS.get(f"{product_type}.{action}")


def _enqueue(sub: Subscription, action: str, actor=None) -> None:
    job_enqueue(
        tenant=sub.tenant, type=f"subscription.{action}", payload={"subscription": str(sub.pk)},
        key=f"subscription.{action}:{sub.pk}:{timezone.now().isoformat()}", actor=actor, obj=sub,
    )  # fmt: skip


@transaction.atomic
def subscription_create(
    *, tenant, customer, product, cycle: str, currency: str | None = None, quantity: int = 1,
    start: date | None = None, config: dict | None = None, external_ref: str = "", bill_now: bool = True,
):  # fmt: skip
    """A pending subscription and, with ``bill_now``, its first invoice (period + setup fee), issued.

    Paying that invoice activates it (see ``activate_paid``)."""
    if product.tenant_id != tenant.pk:
        raise InvalidInput("Unknown product.", field="product")
    if not product.is_orderable:
        raise Conflict("This product is retired or out of stock.", code="not_orderable")
    if cycle not in periods.CYCLE_MONTHS:
        raise InvalidInput("A subscription needs a recurring cycle (one-time products are invoiced once).",
                           field="cycle")  # fmt: skip
    currency = (currency or customer.currency).upper()
    q = quote(product, cycle, currency, quantity, str(customer.country or "") or None)
    start = start or timezone.localdate()
    _s, end = periods.period_containing(anchor=start, cycle=cycle, on=start)
    sub = Subscription.objects.create(
        tenant=tenant, customer=customer, product=product, currency=currency, cycle=cycle, quantity=quantity,
        unit_price=q.unit_price, tax_rate=q.tax_rate, anchor_date=start, current_period_start=start,
        current_period_end=end, billed_through=start, config=config or {}, external_ref=external_ref,
    )  # fmt: skip
    if product.stock is not None:
        product_stock_take(product=product, quantity=quantity)
    audit.created(sub, "subscription.create")
    if bill_now:
        setup = {sub.pk: q.setup_subtotal} if q.setup_subtotal else {}
        bill_subscriptions([sub], on=start, setup_fees=setup)
    return sub


def _next_state_on_payment(sub: Subscription) -> str | None:
    if sub.status == SubscriptionStatus.PENDING:
        return "activate"
    if sub.status == SubscriptionStatus.PAST_DUE:
        return "paid"
    if sub.status == SubscriptionStatus.SUSPENDED and sub.suspension_reason == SuspensionReason.NONPAYMENT:
        return "resume"
    return None


@PAID.register()
def activate_paid(invoice: Invoice) -> None:
    """A paid invoice activates its pending subscriptions and lifts suspensions for non-payment."""
    sub_ids = set(
        SubscriptionCharge.all_tenants.filter(invoice_line__invoice=invoice).values_list("subscription_id", flat=True)
    )
    # Held already when the invoice was locked (locks.lock_invoice) or claimed by the billing run.
    for sub in lock_subscriptions(sub_ids):
        step = _next_state_on_payment(sub)
        if step is None:
            continue
        if step != "activate" and _has_overdue(sub, exclude=invoice):
            continue  # another overdue invoice keeps it where it is
        with audit.change(sub, f"subscription.{step}"):
            sub.status = SubscriptionStatus.ACTIVE
            if step == "activate":
                sub.activated_at = timezone.now()
            sub.suspended_at = None
            sub.suspension_reason = ""
            sub.save()
        if step in ("activate", "resume"):
            _enqueue(sub, step)


def _has_overdue(sub: Subscription, exclude: Invoice | None = None) -> bool:
    today = timezone.localdate()
    qs = Invoice.all_tenants.filter(
        lines__subscription_charge__subscription=sub,
        status__in=[InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE],
        due_date__lt=today,
    )
    if exclude is not None:
        qs = qs.exclude(pk=exclude.pk)
    return qs.exists()


@transaction.atomic
def subscription_suspend(*, sub: Subscription, reason: str = SuspensionReason.OPERATOR, actor=None) -> Subscription:
    sub = lock_subscription(sub)
    if sub.status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE):
        raise Conflict(f"A {sub.status} subscription cannot be suspended.")
    with audit.change(sub, "subscription.suspend"):
        sub.status = SubscriptionStatus.SUSPENDED
        sub.suspended_at = timezone.now()
        sub.suspension_reason = reason
        sub.save()
    _enqueue(sub, "suspend", actor)
    return sub


@transaction.atomic
def subscription_resume(*, sub: Subscription, actor=None) -> Subscription:
    sub = lock_subscription(sub)
    if sub.status != SubscriptionStatus.SUSPENDED:
        raise Conflict(f"A {sub.status} subscription cannot be resumed.")
    with audit.change(sub, "subscription.resume"):
        sub.status = SubscriptionStatus.PAST_DUE if _has_overdue(sub) else SubscriptionStatus.ACTIVE
        sub.suspended_at = None
        sub.suspension_reason = ""
        sub.save()
    _enqueue(sub, "resume", actor)
    return sub


@dataclass(frozen=True)
class Cancellation:
    """What cancelling a subscription on a day does: ``subscription_cancel`` applies exactly these
    figures, and ``subscription_cancel_preview`` shows them first.

    ``credit`` is what goes to the customer's balance (only with ``credit_unused`` on an immediate
    cancel): what the customer paid for the days from the cancel on, i.e. each paid charge's invoice
    line total (after its discount, with its tax: a balance pays invoice totals, so a net credit would
    keep the tax of days never used) in proportion to its days left, so a period paid in advance
    comes back in full. Setup fees are not refunded. A current period that is not wholly paid is never
    credited (``no_credit_reason`` says why)."""

    at_period_end: bool
    ends_on: date
    currency: str
    unused_days: int
    credit: Decimal
    no_credit_reason: str  # "" when credited; "pending" | "unpaid" | "period_end" | "not_asked" | "nothing_left"
    label: str


def _paid(charge: SubscriptionCharge) -> bool:
    line = charge.invoice_line
    return line is not None and line.invoice.status == InvoiceStatus.PAID


def _paid_from(charge: SubscriptionCharge, on: date, currency: str) -> Decimal:
    """What the customer paid for the charge's days from ``on`` on (its line's total, in proportion)."""
    start, end = charge.period_start, charge.period_end
    days, left = (end - start).days, (end - max(on, start)).days
    if days <= 0 or left <= 0:
        return Decimal(0)
    return quantize(charge.invoice_line.total * left / days, currency)  # multiply first, as periods.prorate


def _cancellation(sub: Subscription, at_period_end: bool, credit_unused: bool, on: date | None) -> Cancellation:
    if sub.status == SubscriptionStatus.CANCELLED:
        raise Conflict("This subscription is cancelled already.")
    on = on or timezone.localdate()
    pending = sub.status == SubscriptionStatus.PENDING
    scheduled = at_period_end and not pending
    ends_on = sub.current_period_end if scheduled else on
    in_period = sub.current_period_start <= on < sub.current_period_end
    unused = (sub.current_period_end - max(on, sub.current_period_start)).days if on < sub.current_period_end else 0
    credit, reason = Decimal(0), ""
    if pending:
        reason = "pending"  # never paid: its open invoice is voided instead
    elif scheduled:
        reason = "period_end"  # it runs to the end of what was paid
    elif not credit_unused:
        reason = "not_asked"
    else:
        charges = list(
            SubscriptionCharge.all_tenants.filter(subscription=sub, period_end__gt=sub.current_period_start)
            .exclude(kind=SubscriptionCharge.Kind.USAGE)
            .select_related("invoice_line__invoice")
        )
        current = [c for c in charges if c.period_start < sub.current_period_end]
        if not in_period or not current or not all(_paid(c) for c in current):
            reason = "unpaid" if in_period else "nothing_left"
        else:
            credit = sum((_paid_from(c, on, sub.currency) for c in current if c.kind != "setup"), Decimal(0))
        # Periods billed in advance (a renewal invoice made before its period starts) and paid: in full.
        ahead = [c for c in charges if c.period_start >= sub.current_period_end and c.kind != "setup"]
        credit += sum((_paid_from(c, on, sub.currency) for c in ahead if _paid(c)), Decimal(0))
        if credit > 0:
            reason = ""
        elif not reason:
            reason = "nothing_left"
    label = f"{sub.product.name} x{sub.quantity}, cancelled on {on}: {unused} unused day(s) to {sub.current_period_end}"
    return Cancellation(at_period_end=scheduled, ends_on=ends_on, currency=sub.currency, unused_days=unused,
                        credit=credit, no_credit_reason=reason, label=label)  # fmt: skip


def subscription_cancel_preview(*, sub: Subscription, at_period_end: bool = False, credit_unused: bool = False,
                                on: date | None = None) -> Cancellation:  # fmt: skip
    """The figures ``subscription_cancel`` would apply, computed the same way, nothing written."""
    return _cancellation(sub, at_period_end, credit_unused, on)


def subscription_cancel(*, sub: Subscription, at_period_end: bool = False, credit_unused: bool = False,
                        actor=None, on: date | None = None) -> Subscription:  # fmt: skip
    """Cancel at the end of the paid period, or now (``subscription_cancel_quoted``)."""
    return subscription_cancel_quoted(sub=sub, at_period_end=at_period_end, credit_unused=credit_unused,
                                      actor=actor, on=on)[0]  # fmt: skip


@transaction.atomic
def subscription_cancel_quoted(*, sub: Subscription, at_period_end: bool = False, credit_unused: bool = False,
                               actor=None, on: date | None = None) -> tuple[Subscription, Cancellation]:  # fmt: skip
    """Cancel at the end of the paid period, or now; answers the figures it applied. Now with
    ``credit_unused``: the unused paid days go to the customer's balance (``Cancellation``), in this
    transaction with the lock held, so a retry finds the subscription cancelled (409) and never
    credits twice."""
    sub = lock_subscription(sub)
    quote = _cancellation(sub, at_period_end, credit_unused, on)
    if quote.at_period_end:
        with audit.change(sub, "subscription.cancel_scheduled"):
            sub.cancel_at_period_end = True
            sub.save()
        return sub, quote
    subscription_cancel_now(sub, actor=actor, on=on)
    if quote.credit > 0:
        row = CreditTransaction.objects.create(
            tenant_id=sub.tenant_id, customer_id=sub.customer_id, currency=sub.currency, amount=quote.credit,
            kind=CreditTransaction.Kind.ADJUSTMENT, description=f"Cancellation credit: {quote.label}"[:300],
        )  # fmt: skip
        after = {"credit": str(quote.credit), "currency": sub.currency, "credit_transaction": str(row.pk)}
        audit.record(action="subscription.cancel_credit", obj=sub, after=after)
    return sub, quote


def subscription_cancel_now(sub: Subscription, actor=None, on: date | None = None) -> None:
    """End ``sub`` now (staff, the billing run at period end, dunning's termination).

    The caller holds the subscription's lock, in its transaction. A subscription that was never
    paid (pending) has its open first invoice voided and nothing to deprovision; any other has its
    unpaid invoices for days from ``on`` on voided (``_void_unserved``) and gets its
    ``subscription.cancel`` job. Audited as ``subscription.cancel``."""
    was_pending = sub.status == SubscriptionStatus.PENDING
    with audit.change(sub, "subscription.cancel"):
        sub.status = SubscriptionStatus.CANCELLED
        sub.cancelled_at = timezone.now()
        sub.save()
    if was_pending:
        # Never paid: its first invoice is void and nothing was provisioned.
        for invoice in Invoice.all_tenants.filter(
            lines__subscription_charge__subscription=sub, status=InvoiceStatus.OPEN, amount_paid=0
        ).distinct():
            invoice_void(invoice=invoice)
    else:
        _void_unserved(sub, on or timezone.localdate())
        _enqueue(sub, "cancel", actor)


def _void_unserved(sub: Subscription, on: date) -> None:
    """Void the open, unpaid invoices that bill only days from ``on`` on (a renewal invoiced before
    its period starts): the service ends, so dunning must not chase them. An invoice that bills
    anything else too (another service, days already served) stays as it is: it is still owed."""
    for invoice in Invoice.all_tenants.filter(
        tenant_id=sub.tenant_id, status=InvoiceStatus.OPEN, amount_paid=0,
        lines__subscription_charge__subscription=sub, lines__subscription_charge__period_start__gte=on,
    ).distinct():  # fmt: skip
        lines = list(invoice.lines.select_related("subscription_charge"))
        charges = [getattr(line, "subscription_charge", None) for line in lines]
        if all(c is not None and c.subscription_id == sub.pk and c.period_start >= on for c in charges):
            invoice_void(invoice=invoice)


@dataclass(frozen=True)
class PlanChange:
    """What changing a subscription's product or quantity on a day costs: ``subscription_change``
    applies exactly these figures, and ``subscription_change_preview`` shows them first."""

    product: Any
    quantity: int
    unit_price: Decimal
    tax_rate: Decimal
    old_total: Decimal  # per cycle, before tax
    new_total: Decimal
    on: date
    period_end: date
    proration: periods.Proration | None  # None: nothing to prorate (same price, or the period is unbilled)
    label: str

    @property
    def net(self) -> Decimal:
        """> 0: charged on the next invoice; < 0: credited to the customer's balance now."""
        return self.proration.net if self.proration is not None else Decimal(0)


def _plan_change(sub: Subscription, product, quantity: int | None, on: date | None) -> PlanChange:
    if sub.status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE):
        raise Conflict(f"A {sub.status} subscription cannot be changed.")
    product = product or sub.product
    quantity = quantity or sub.quantity
    if product.tenant_id != sub.tenant_id:
        raise InvalidInput("Unknown product.", field="product")
    if product.pk != sub.product_id and not product.is_orderable:
        raise Conflict("This product is retired or out of stock.", code="not_orderable")
    q = quote(product, sub.cycle, sub.currency, quantity, str(sub.customer.country or "") or None)
    on = on or timezone.localdate()
    old_total = quantize(sub.unit_price * sub.quantity, sub.currency)
    new_total = q.recurring_subtotal
    paid_period = sub.billed_through >= sub.current_period_end
    p = None
    if paid_period and old_total != new_total:
        p = periods.prorate(old=old_total, new=new_total, start=sub.current_period_start,
                            end=sub.current_period_end, on=on, currency=sub.currency)  # fmt: skip
    label = f"{product.name} x{quantity} (was {sub.product.name} x{sub.quantity}), {on} to {sub.current_period_end}"
    return PlanChange(product=product, quantity=quantity, unit_price=q.unit_price, tax_rate=q.tax_rate,
                      old_total=old_total, new_total=new_total, on=on, period_end=sub.current_period_end,
                      proration=p, label=label)  # fmt: skip


def subscription_change_preview(*, sub: Subscription, product=None, quantity: int | None = None,
                                on: date | None = None) -> PlanChange:  # fmt: skip
    """The figures ``subscription_change`` would apply, computed the same way, nothing written."""
    return _plan_change(sub, product, quantity, on)


@transaction.atomic
def subscription_change(*, sub: Subscription, product=None, quantity: int | None = None, on: date | None = None):
    """Change the product or quantity now, prorated by day over the rest of the current period.

    A higher price adds a proration charge to the next invoice; a lower one credits the
    customer's balance at once. The cycle and currency stay (change them at renewal)."""
    sub = lock_subscription(sub)
    change = _plan_change(sub, product, quantity, on)
    hook = PLAN_CHANGES.get(sub.product.type)
    if hook is not None:
        hook(sub, change.product, change.quantity)
    with audit.change(sub, "subscription.change"):
        if change.net > 0:
            try:
                with transaction.atomic():
                    SubscriptionCharge.objects.create(
                        tenant_id=sub.tenant_id, subscription=sub, kind=SubscriptionCharge.Kind.PRORATION,
                        period_start=change.on, period_end=sub.current_period_end, amount=change.net,
                        description=change.label,
                    )  # fmt: skip
            except IntegrityError as exc:
                raise Conflict("This subscription was changed today already; change it again tomorrow.") from exc
        elif change.net < 0:
            CreditTransaction.objects.create(
                tenant_id=sub.tenant_id, customer_id=sub.customer_id, currency=sub.currency, amount=-change.net,
                kind=CreditTransaction.Kind.ADJUSTMENT, description=f"Proration credit: {change.label}",
            )  # fmt: skip
        sub.product = change.product
        sub.quantity = change.quantity
        sub.unit_price = change.unit_price
        sub.tax_rate = change.tax_rate
        sub.save()
    return sub


@transaction.atomic
def usage_record(*, sub: Subscription, quantity: Decimal, key: str, occurred_at=None) -> tuple[UsageRecord, bool]:
    """Report metered usage. The same key again returns the first record and counts nothing twice."""
    if not (sub.product.metering or {}).get("unit_prices"):
        raise Conflict("This subscription's product is not metered.", code="not_metered")
    if sub.status == SubscriptionStatus.CANCELLED:
        raise Conflict("A cancelled subscription takes no usage.")
    quantity = Decimal(quantity)
    if quantity <= 0:
        raise InvalidInput("Quantity must be more than zero.", field="quantity")
    existing = UsageRecord.objects.filter(subscription=sub, idempotency_key=key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            record = UsageRecord.objects.create(
                tenant_id=sub.tenant_id, subscription=sub, quantity=quantity, idempotency_key=key,
                occurred_at=occurred_at or timezone.now(),
            )  # fmt: skip
    except IntegrityError:
        return UsageRecord.objects.get(subscription=sub, idempotency_key=key), False
    audit.record(action="subscription.usage", obj=sub, after={"quantity": str(quantity), "key": key})
    return record, True
