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
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Case, Exists, Min, OuterRef, Q, Sum, Value, When
from django.utils import timezone

from apps.audit import services as audit
from apps.catalog.pricing import usage_charge
from apps.common.money import quantize
from apps.customers.models import Customer
from apps.tenancy.scoping import tenant_scope

from .. import periods
from ..models import BillingSettings, Invoice, Subscription, SubscriptionCharge, SubscriptionStatus, UsageRecord
from . import invoices

log = logging.getLogger(__name__)
# Pending subscriptions are billed once, when made; renewals start after the first payment.
BILLABLE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


# Customer groups billed per transaction: the queries of a batch do not grow with its size, and a
# batch holds the tenant's invoice number sequence only briefly (manual issues queue behind it).
BATCH = 200


@dataclass
class RunResult:
    invoices: int = 0
    charges: int = 0
    subscriptions: int = 0
    skipped_locked: int = 0
    cancelled: int = 0


@dataclass
class Group:
    """What one invoice is made of: subscriptions of ONE customer and currency, plus one-time lines."""

    customer: Customer
    currency: str
    subs: list[Subscription]
    setup_fees: dict = field(default_factory=dict)
    extra_lines: list[dict] = field(default_factory=list)


@dataclass
class Billed:
    invoices: list[Invoice | None]  # one per group, None when nothing was due
    charges: int = 0  # charges written (a duplicate of an earlier run's is not)


def _due_charges(
    sub: Subscription, on: date, lead: int, setup_fee: Decimal | None, pending: list[SubscriptionCharge],
    usage: dict | None,
) -> list[SubscriptionCharge]:  # fmt: skip
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
    out.extend(pending)
    # Metered usage, in arrears: everything reported before today and not billed yet.
    if usage and usage["q"]:
        unit = (sub.product.metering or {}).get("unit", "units")
        out.append(SubscriptionCharge(kind=SubscriptionCharge.Kind.USAGE, period_start=usage["first"].date(),
                                      period_end=on,
                                      amount=usage_charge(sub.product, currency=sub.currency, quantity=usage["q"]),
                                      description=f"{sub.product.name}: {usage['q'].normalize()} {unit}"))  # fmt: skip
    return out


def bill_groups(groups: list[Group], *, tenant, on: date, conf: BillingSettings) -> Billed:
    """Invoice what is due for several groups of ONE tenant, in the caller's transaction, with the
    subscriptions locked by the caller. The number of queries does not depend on the number of groups.

    Every charge is inserted with ON CONFLICT DO NOTHING on its unique key (subscription, kind,
    period) and read back: a charge that already exists (billed by an earlier or concurrent run)
    is dropped from the invoice, so a period is never billed twice."""
    subs = [sub for g in groups for sub in g.subs]
    sub_ids = [sub.pk for sub in subs]
    pending: dict = defaultdict(list)
    if sub_ids:
        unbilled = SubscriptionCharge.all_tenants.filter(subscription_id__in=sub_ids, invoice_line__isnull=True)
        for charge in unbilled.order_by("subscription_id", "period_start", "created_at"):
            pending[charge.subscription_id].append(charge)
    metered = [sub.pk for sub in subs if (sub.product.metering or {}).get("unit_prices")]
    usage: dict = {}
    if metered:
        rows = (UsageRecord.all_tenants.filter(subscription_id__in=metered, charge__isnull=True,
                                               occurred_at__date__lt=on)
                .values("subscription_id").annotate(q=Sum("quantity"), first=Min("occurred_at")))  # fmt: skip
        usage = {row["subscription_id"]: row for row in rows}
    # What is due, per group and subscription, in invoice line order.
    due: list[list[tuple[Subscription, SubscriptionCharge]]] = []
    new: list[SubscriptionCharge] = []
    for group in groups:
        items = []
        for sub in group.subs:
            for charge in _due_charges(sub, on, conf.lead_days, group.setup_fees.get(sub.pk), pending[sub.pk],
                                       usage.get(sub.pk)):  # fmt: skip
                if charge._state.adding:
                    charge.tenant_id = sub.tenant_id
                    charge.subscription = sub
                    new.append(charge)
                items.append((sub, charge))
        due.append(items)
    # bulk_create marks every object as saved, inserted or not: what was written is what reads back.
    new_ids = {c.pk for c in new}
    written: set = set()
    if new:
        SubscriptionCharge.all_tenants.bulk_create(new, ignore_conflicts=True, batch_size=1000)
        written = set(
            SubscriptionCharge.all_tenants.filter(pk__in=[c.pk for c in new]).order_by().values_list("pk", flat=True)
        )
    drafts: list[dict] = []
    kept: list[list[SubscriptionCharge]] = []
    moved: list[Subscription] = []
    usage_links: dict = {}
    now = timezone.now()
    for group, items in zip(groups, due, strict=True):
        pairs = [(sub, c) for sub, c in items if c.pk not in new_ids or c.pk in written]
        saved = [c for _, c in pairs]
        for charge in saved:
            if charge.kind == SubscriptionCharge.Kind.USAGE and charge.pk in written:
                usage_links[charge.subscription_id] = charge.pk
        for sub in group.subs:
            ends = [c.period_end for c in saved if c.subscription_id == sub.pk and c.kind == "recurring"]
            if ends:
                sub.billed_through = max(ends)
                sub.updated_at = now
                moved.append(sub)
        lines = [{
            "description": c.description, "quantity": 1, "unit_price": c.amount,
            "tax_rate": sub.tax_rate, "period_start": c.period_start,
            "period_end": c.period_end - timedelta(days=1) if c.period_end > c.period_start else c.period_end,
        } for sub, c in pairs] + list(group.extra_lines)  # fmt: skip
        kept.append(saved)
        if lines:
            drafts.append({"customer": group.customer, "currency": group.currency or group.customer.currency,
                           "lines": lines, "audit": [("billing.run.invoice", {
                               "subscriptions": [str(s.pk) for s in group.subs], "lines": len(lines)})]})  # fmt: skip
    if moved:
        Subscription.all_tenants.bulk_update(moved, ["billed_through", "updated_at"], batch_size=1000)
    if usage_links:
        to_charge = Case(*[When(subscription_id=s, then=Value(c)) for s, c in usage_links.items()])
        UsageRecord.all_tenants.filter(
            subscription_id__in=list(usage_links), charge__isnull=True, occurred_at__date__lt=on
        ).update(charge_id=to_charge)
    made = iter(invoices.create_issued_many(tenant=tenant, conf=conf, drafts=drafts))
    out: list[Invoice | None] = []
    linked: list[SubscriptionCharge] = []
    for saved, group in zip(kept, groups, strict=True):
        if not saved and not group.extra_lines:
            out.append(None)
            continue
        invoice = next(made)
        out.append(invoice)
        for charge, line in zip(saved, invoice._lines[: len(saved)], strict=True):
            charge.invoice_line = line
            linked.append(charge)
    if linked:
        SubscriptionCharge.all_tenants.bulk_update(linked, ["invoice_line"], batch_size=1000)
    return Billed(invoices=out, charges=len(written))


def bill_subscriptions(
    subs: list[Subscription], *, on: date, setup_fees: dict | None = None, extra_lines: list[dict] | None = None,
    customer=None, currency: str | None = None,
) -> Invoice | None:  # fmt: skip
    """Invoice what is due for subscriptions of ONE customer and currency (locked by the caller),
    plus ``extra_lines`` (one-time items of an order) after theirs.

    Returns the issued invoice, or None when nothing was due (or another run billed it)."""
    if not subs and not extra_lines:
        return None
    customer = customer or subs[0].customer
    currency = currency or subs[0].currency
    with transaction.atomic():
        conf = invoices.billing_settings(customer.tenant_id)
        group = Group(customer=customer, currency=currency, subs=list(subs), setup_fees=setup_fees or {},
                      extra_lines=list(extra_lines or []))  # fmt: skip
        return bill_groups([group], tenant=customer.tenant_id, on=on, conf=conf).invoices[0]


def _roll_periods(on: date, result: RunResult) -> None:
    """Move current periods forward, and end subscriptions cancelled at period end."""
    from .subscriptions import _cancel_now

    stale = Subscription.all_tenants.filter(current_period_end__lte=on).exclude(status=SubscriptionStatus.CANCELLED)
    ids = list(stale.values_list("pk", flat=True))
    for i in range(0, len(ids), 1000):
        with transaction.atomic():
            locked = (Subscription.all_tenants.select_for_update(skip_locked=True, of=("self",))
                      .select_related("tenant").filter(pk__in=ids[i : i + 1000], current_period_end__lte=on)
                      .exclude(status=SubscriptionStatus.CANCELLED).order_by("pk"))  # fmt: skip
            rolled = []
            now = timezone.now()
            for sub in locked:
                if sub.cancel_at_period_end:
                    with tenant_scope(sub.tenant):
                        _cancel_now(sub, audit.snapshot(sub))
                    result.cancelled += 1
                    continue
                sub.current_period_start, sub.current_period_end = periods.period_containing(
                    anchor=sub.anchor_date, cycle=sub.cycle, on=on
                )
                sub.updated_at = now
                rolled.append(sub)
            Subscription.all_tenants.bulk_update(
                rolled, ["current_period_start", "current_period_end", "updated_at"], batch_size=1000
            )


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
    by_tenant: dict = defaultdict(lambda: defaultdict(list))
    for tenant_id, customer_id, currency, pk in candidates.iterator():
        by_tenant[tenant_id][(customer_id, currency)].append(pk)
    total = sum(len(groups) for groups in by_tenant.values())
    done = 0
    for tenant_groups in by_tenant.values():
        id_lists = list(tenant_groups.values())
        conf = None
        for i in range(0, len(id_lists), BATCH):
            ids = [pk for chunk in id_lists[i : i + BATCH] for pk in chunk]
            with transaction.atomic():
                locked = list(
                    Subscription.all_tenants.select_for_update(skip_locked=True, of=("self",))
                    .select_related("tenant", "customer", "product")
                    .filter(pk__in=ids, status__in=BILLABLE)
                    .order_by("pk")
                )
                result.skipped_locked += len(ids) - len(locked)
                if locked:
                    tenant = locked[0].tenant
                    grouped: dict[tuple, list] = defaultdict(list)
                    for sub in locked:
                        grouped[(sub.customer_id, sub.currency)].append(sub)
                    groups = [Group(customer=subs[0].customer, currency=currency, subs=subs)
                              for (_c, currency), subs in grouped.items()]  # fmt: skip
                    with tenant_scope(tenant):
                        conf = conf or invoices.billing_settings(tenant)
                        billed = bill_groups(groups, tenant=tenant, on=on, conf=conf)
                    result.charges += billed.charges
                    for group, invoice in zip(groups, billed.invoices, strict=True):
                        if invoice is not None:
                            result.invoices += 1
                            result.subscriptions += len(group.subs)
            done += len(id_lists[i : i + BATCH])
            if progress:
                progress(done, total)
    log.info("billing run %s: %s", on, result)
    return result
