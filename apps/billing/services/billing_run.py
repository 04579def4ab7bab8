"""The billing run: every due subscription period invoiced exactly once.

Safe to run again and at the same time: subscriptions are claimed with SKIP LOCKED, every
billed piece is a ``SubscriptionCharge`` whose unique key (subscription, kind, period) refuses
a second copy, and ``billed_through`` moves forward in the same transaction. Missed days are
caught up: each missed period is billed once. One invoice per customer and currency.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.utils import timezone

from apps.audit import services as audit
from apps.catalog.pricing import usage_charge
from apps.common.money import quantize
from apps.tenancy.scoping import tenant_scope

from .. import periods
from ..models import BillingSettings, Invoice, Subscription, SubscriptionCharge, SubscriptionStatus, UsageRecord
from . import invoices

log = logging.getLogger(__name__)
# Pending subscriptions are billed once, when made; renewals start after the first payment.
BILLABLE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


@dataclass
class RunResult:
    invoices: int = 0
    charges: int = 0
    subscriptions: int = 0
    skipped_locked: int = 0
    cancelled: int = 0


def _due_charges(sub: Subscription, on: date, lead: int, setup_fee: Decimal | None) -> list[SubscriptionCharge]:
    out: list[SubscriptionCharge] = []
    amount = quantize(sub.unit_price * sub.quantity, sub.currency)
    name = f"{sub.product.name}" + (f" x{sub.quantity}" if sub.quantity > 1 else "")
    if setup_fee:
        out.append(SubscriptionCharge(kind=SubscriptionCharge.Kind.SETUP, period_start=sub.anchor_date,
                                      period_end=sub.anchor_date, amount=setup_fee,
                                      description=f"Setup: {name}"))  # fmt: skip
    start = sub.billed_through
    while start - timedelta(days=lead) <= on:
        if sub.cancel_at_period_end and start >= sub.current_period_end:
            break
        s, e = periods.period_containing(anchor=sub.anchor_date, cycle=sub.cycle, on=start)
        out.append(SubscriptionCharge(kind=SubscriptionCharge.Kind.RECURRING, period_start=s, period_end=e,
                                      amount=amount, description=f"{name} ({sub.cycle})"))  # fmt: skip
        start = e
    # Plan-change charges made since the last invoice.
    out.extend(SubscriptionCharge.objects.filter(subscription=sub, invoice_line__isnull=True))
    # Metered usage, in arrears: everything reported before today and not billed yet.
    if (sub.product.metering or {}).get("unit_prices"):
        pending = UsageRecord.objects.filter(subscription=sub, charge__isnull=True, occurred_at__date__lt=on)
        agg = pending.aggregate(q=Sum("quantity"))
        if agg["q"]:
            first = pending.order_by("occurred_at").values_list("occurred_at", flat=True).first().date()
            unit = (sub.product.metering or {}).get("unit", "units")
            charge = SubscriptionCharge(kind=SubscriptionCharge.Kind.USAGE, period_start=first, period_end=on,
                                        amount=usage_charge(sub.product, currency=sub.currency, quantity=agg["q"]),
                                        description=f"{sub.product.name}: {agg['q'].normalize()} {unit}")  # fmt: skip
            charge._usage = pending  # linked to the charge once it is saved
            out.append(charge)
    return out


def bill_subscriptions(
    subs: list[Subscription], *, on: date, setup_fees: dict | None = None, extra_lines: list[dict] | None = None,
    customer=None, currency: str | None = None,
) -> Invoice | None:  # fmt: skip
    """Invoice what is due for subscriptions of ONE customer and currency (locked by the caller),
    plus ``extra_lines`` (one-time items of an order) after theirs.

    Returns the issued invoice, or None when nothing was due (or another run billed it)."""
    if not subs and not extra_lines:
        return None
    setup_fees = setup_fees or {}
    customer = customer or subs[0].customer
    currency = currency or subs[0].currency
    tenant = customer.tenant
    lead = BillingSettings.objects.get_or_create(tenant=tenant)[0].lead_days
    lines: list[dict] = []
    saved: list[SubscriptionCharge] = []
    with transaction.atomic():
        for sub in subs:
            for charge in _due_charges(sub, on, lead, setup_fees.get(sub.pk)):
                if charge._state.adding:
                    charge.tenant_id = sub.tenant_id
                    charge.subscription = sub
                    try:
                        with transaction.atomic():
                            charge.save()
                    except IntegrityError:
                        continue  # billed already (a concurrent or earlier run): a duplicate is success
                    if getattr(charge, "_usage", None) is not None:
                        charge._usage.update(charge=charge)
                saved.append(charge)
                lines.append({
                    "description": charge.description, "quantity": 1, "unit_price": charge.amount,
                    "tax_rate": sub.tax_rate, "period_start": charge.period_start,
                    "period_end": charge.period_end - timedelta(days=1) if charge.period_end > charge.period_start
                    else charge.period_end,
                })  # fmt: skip
            recurring_ends = [c.period_end for c in saved if c.subscription_id == sub.pk and c.kind == "recurring"]
            if recurring_ends:
                sub.billed_through = max(recurring_ends)
                sub.save(update_fields=["billed_through", "updated_at"])
        lines += extra_lines or []
        if not lines:
            return None
        invoice = invoices.invoice_create(tenant=tenant, customer=customer, lines=lines, currency=currency)
        by_position = list(invoice.lines.order_by("position"))
        for charge, line in zip(saved, by_position[: len(saved)], strict=True):
            charge.invoice_line = line
        SubscriptionCharge.objects.bulk_update(saved, ["invoice_line"])
        invoice = invoices.invoice_issue(invoice=invoice)
        audit.record(action="billing.run.invoice", obj=invoice,
                     after={"subscriptions": [str(s.pk) for s in subs], "lines": len(lines)})  # fmt: skip
        return invoice


def _roll_periods(on: date, result: RunResult) -> None:
    """Move current periods forward, and end subscriptions cancelled at period end."""
    from .subscriptions import _cancel_now

    stale = Subscription.all_tenants.filter(current_period_end__lte=on).exclude(status=SubscriptionStatus.CANCELLED)
    for sub_id in stale.values_list("pk", flat=True).iterator():
        with transaction.atomic():
            sub = (Subscription.all_tenants.select_for_update(skip_locked=True).select_related("tenant")
                   .filter(pk=sub_id).first())  # fmt: skip
            if sub is None or sub.current_period_end > on:
                continue
            with tenant_scope(sub.tenant):
                if sub.cancel_at_period_end:
                    _cancel_now(sub, audit.snapshot(sub))
                    result.cancelled += 1
                    continue
                sub.current_period_start, sub.current_period_end = periods.period_containing(
                    anchor=sub.anchor_date, cycle=sub.cycle, on=on
                )
                sub.save(update_fields=["current_period_start", "current_period_end", "updated_at"])


def _due_by_lead(on: date) -> Q:
    """Subscriptions whose next period starts within their tenant's lead time (default 7 days)."""
    by_lead: dict[int, list] = defaultdict(list)
    for tenant_id, lead in BillingSettings.objects.values_list("tenant_id", "lead_days"):
        by_lead[lead].append(tenant_id)
    configured = [t for ids in by_lead.values() for t in ids]
    default = BillingSettings._meta.get_field("lead_days").default
    q = Q(billed_through__lte=on + timedelta(days=default)) & ~Q(tenant_id__in=configured)
    for lead, tenant_ids in by_lead.items():
        q |= Q(tenant_id__in=tenant_ids, billed_through__lte=on + timedelta(days=lead))
    return q


def billing_run(*, on: date | None = None, progress: Callable[[int, int], None] | None = None) -> RunResult:
    on = on or timezone.localdate()
    result = RunResult()
    _roll_periods(on, result)
    unbilled_charges = SubscriptionCharge.all_tenants.filter(subscription=OuterRef("pk"), invoice_line__isnull=True)
    unbilled_usage = UsageRecord.all_tenants.filter(subscription=OuterRef("pk"), charge__isnull=True)
    candidates = (
        Subscription.all_tenants.filter(status__in=BILLABLE)
        .filter(_due_by_lead(on) | Q(Exists(unbilled_charges)) | Q(Exists(unbilled_usage)))
        .values_list("tenant_id", "customer_id", "currency", "pk")
        .distinct()
    )
    groups: dict[tuple, list] = defaultdict(list)
    for tenant_id, customer_id, currency, pk in candidates.iterator():
        groups[(tenant_id, customer_id, currency)].append(pk)
    total = len(groups)
    for index, ids in enumerate(groups.values(), start=1):
        with transaction.atomic():
            locked = list(
                Subscription.all_tenants.select_for_update(skip_locked=True, of=("self",))
                .select_related("tenant", "customer", "product")
                .filter(pk__in=ids, status__in=BILLABLE)
                .order_by("pk")
            )
            result.skipped_locked += len(ids) - len(locked)
            if locked:
                with tenant_scope(locked[0].tenant):
                    before = SubscriptionCharge.objects.filter(subscription__in=locked).count()
                    invoice = bill_subscriptions(locked, on=on)
                    if invoice is not None:
                        result.invoices += 1
                        result.subscriptions += len(locked)
                        result.charges += SubscriptionCharge.objects.filter(subscription__in=locked).count() - before
        if progress:
            progress(index, total)
    log.info("billing run %s: %s", on, result)
    return result
