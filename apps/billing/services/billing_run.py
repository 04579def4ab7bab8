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

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from apps.catalog.models import Product
from apps.tenancy.models import Tenant
from apps.tenancy.scoping import tenant_scope

from .. import periods
from ..locks import claim_subscriptions
from ..models import BillingSettings, Invoice, Subscription, SubscriptionCharge, SubscriptionStatus, UsageRecord
from . import invoices
from .charges import Group, bill_groups
from .subscriptions import subscription_cancel_now

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


def _roll_periods(on: date, result: RunResult, cancelled: Callable[[Subscription], None] | None) -> None:
    """Move current periods forward, and end subscriptions cancelled at period end."""
    stale = Subscription.all_tenants.filter(current_period_end__lte=on).exclude(status=SubscriptionStatus.CANCELLED)
    ids = list(stale.values_list("pk", flat=True))
    for i in range(0, len(ids), 1000):
        with transaction.atomic():
            locked = claim_subscriptions(
                Subscription.all_tenants.select_related("tenant")
                .filter(pk__in=ids[i : i + 1000], current_period_end__lte=on)
                .exclude(status=SubscriptionStatus.CANCELLED)
            )
            rolled = []
            now = timezone.now()
            for sub in locked:
                if sub.cancel_at_period_end:
                    with tenant_scope(sub.tenant):
                        subscription_cancel_now(sub)
                    result.cancelled += 1
                    if cancelled:
                        cancelled(sub)
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


def billing_run(
    *,
    on: date | None = None,
    progress: Callable[[int, int], None] | None = None,
    invoiced: Callable[[list[Invoice]], None] | None = None,
    cancelled: Callable[[Subscription], None] | None = None,
) -> RunResult:
    """Bill what is due ``on`` (default today). ``progress(done, total)`` follows the customer groups;
    ``invoiced(invoices)`` gets each batch's new invoices and ``cancelled(subscription)`` each
    subscription ended at its period's end, in their transactions (``manage.py billing_run`` reports
    them)."""
    on = on or timezone.localdate()
    result = RunResult()
    _roll_periods(on, result, cancelled)
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
    for tenant_id, tenant_groups in by_tenant.items():
        id_lists = list(tenant_groups.values())
        conf = None
        for i in range(0, len(id_lists), BATCH):
            ids = [pk for chunk in id_lists[i : i + BATCH] for pk in chunk]
            with transaction.atomic():
                locked = list(
                    claim_subscriptions(
                        Subscription.all_tenants.select_related("customer").filter(pk__in=ids, status__in=BILLABLE)
                    )
                )
                result.skipped_locked += len(ids) - len(locked)
                if locked:
                    # One tenant, and a few products, for the batch's many subscriptions: read once each
                    # rather than joined to every row (a tenant and a product built per subscription).
                    tenant = Tenant.objects.get(pk=tenant_id)  # as the batch's transaction sees it
                    products = Product.all_tenants.in_bulk({sub.product_id for sub in locked})
                    for sub in locked:
                        sub.tenant = tenant
                        sub.product = products[sub.product_id]
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
                    if invoiced:
                        invoiced([invoice for invoice in billed.invoices if invoice is not None])
            done += len(id_lists[i : i + BATCH])
            if progress:
                progress(done, total)
    log.info("billing run %s: %s", on, result)
    return result
