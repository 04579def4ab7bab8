"""Dunning: reminders before and after the due date, then suspension, then termination.

Each step is taken once per invoice (a unique ``DunningNotice``), in order, and only while the
invoice is still open; a late run catches up. Suspensions made here are for non-payment, so a
payment lifts them (``subscriptions.activate_paid``); staff suspensions are never lifted here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.tenancy.scoping import tenant_scope

from ..locks import lock_invoice, lock_subscription
from ..models import BillingSettings, DunningNotice, Invoice, InvoiceStatus, Subscription, SubscriptionStatus
from .notifications import notify_invoice
from .subscriptions import subscription_cancel_now, subscription_suspend


def _steps(conf: BillingSettings, invoice: Invoice, on: date) -> list[str]:
    due = invoice.due_date
    steps = [
        f"before:{d}"
        for d in sorted(conf.reminder_days_before or [], reverse=True)
        if due - timedelta(days=d) <= on < due
    ]
    if on > due:
        steps.append("past_due")
    steps += [f"after:{d}" for d in sorted(conf.reminder_days_after or []) if on >= due + timedelta(days=d)]
    if conf.suspend_after_days is not None and on >= due + timedelta(days=conf.suspend_after_days):
        steps.append("suspend")
    if conf.terminate_after_days is not None and on >= due + timedelta(days=conf.terminate_after_days):
        steps.append("terminate")
    return steps


def _take(invoice: Invoice, step: str, on: date) -> bool:
    try:
        with transaction.atomic():
            DunningNotice.objects.create(tenant_id=invoice.tenant_id, invoice=invoice, step=step, taken_on=on)
        return True
    except IntegrityError:
        return False


def _subscriptions_of(invoice: Invoice):
    return Subscription.objects.filter(charges__invoice_line__invoice=invoice).distinct()


def _apply(invoice: Invoice, step: str) -> list[Subscription]:
    """One step, with the invoice and its subscriptions locked (``lock_invoice``); returns the
    subscriptions it changed (none for a reminder)."""
    changed: list[Subscription] = []
    if step.startswith("before:"):
        notify_invoice(invoice, "due_soon")
    elif step.startswith("after:"):
        notify_invoice(invoice, "overdue")
    elif step == "past_due":
        for sub in _subscriptions_of(invoice).filter(status=SubscriptionStatus.ACTIVE):
            with audit.change(sub, "subscription.past_due"):
                sub.status = SubscriptionStatus.PAST_DUE
                sub.save(update_fields=["status", "updated_at"])
            changed.append(sub)
    elif step == "suspend":
        for sub in _subscriptions_of(invoice).filter(
            status__in=[SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE]
        ):
            changed.append(subscription_suspend(sub=sub, reason="nonpayment"))
    elif step == "terminate":
        for sub in _subscriptions_of(invoice).exclude(status=SubscriptionStatus.CANCELLED):
            sub = lock_subscription(sub)
            subscription_cancel_now(sub)
            changed.append(sub)
    return changed


# on_step(invoice, step, subscriptions changed): called for each step taken, in its transaction.
StepTaken = Callable[[Invoice, str, list[Subscription]], None]


def dunning_run(
    *, on: date | None = None, progress: Callable[[int, int], None] | None = None, on_step: StepTaken | None = None
) -> dict:
    """Take every dunning step due ``on`` (default today); returns the count of steps taken by kind
    (``before``, ``past_due``, ``after``, ``suspend``, ``terminate``). ``progress(done, total)`` follows
    the invoices looked at."""
    on = on or timezone.localdate()
    settings_by_tenant = {s.tenant_id: s for s in BillingSettings.objects.all()}
    default = BillingSettings()
    horizon = on + timedelta(days=max([0, *(d for s in settings_by_tenant.values() for d in s.reminder_days_before)]))
    taken: dict[str, int] = {}
    candidates = (
        Invoice.all_tenants.filter(status=InvoiceStatus.OPEN, due_date__isnull=False, due_date__lte=horizon)
        .select_related("tenant")
        .order_by("due_date")
    )
    total = candidates.count() if progress else 0
    for done, invoice in enumerate(candidates.iterator(), start=1):
        conf = settings_by_tenant.get(invoice.tenant_id, default)
        with tenant_scope(invoice.tenant):
            for step in _steps(conf, invoice, on):
                with transaction.atomic():
                    fresh = lock_invoice(invoice)
                    if fresh.status != InvoiceStatus.OPEN:
                        break  # paid or voided meanwhile: no further step
                    if _take(fresh, step, on):
                        changed = _apply(fresh, step)
                        kind = step.split(":")[0]
                        taken[kind] = taken.get(kind, 0) + 1
                        if on_step:
                            on_step(fresh, step, changed)
        if progress:
            progress(min(done, total), total)
    if progress and not total:
        progress(0, 0)
    return taken
