"""Billing figures for the operators' dashboard, across every tenant: one aggregate query each.

Amounts are Decimal per currency (never summed across currencies): ``{"EUR": Decimal("12.00")}``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db.models import Count, DecimalField, ExpressionWrapper, F, Sum
from django.utils import timezone

from apps.common.money import quantize
from apps.customers.services import DELETE_GUARDS
from apps.whitelabel.selectors import LOGO_KEEPERS

from .models import CreditNote, Invoice, InvoiceStatus, Payment, Subscription, SubscriptionStatus
from .periods import CYCLE_MONTHS

# Subscriptions that bring money in every month: past-due ones still run until dunning suspends
# them; pending ones (first invoice unpaid), suspended and cancelled ones do not count.
MRR_STATUSES = [SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE]


def mrr_by_currency() -> dict[str, Decimal]:
    """Monthly recurring revenue before tax: each running subscription's price per month.

    One GROUP BY (currency, cycle) query; the per-cycle division happens on the few groups, so
    an annual 120.00 counts 10.00 a month. Rounded to each currency's minor unit at the end.
    """
    amount = ExpressionWrapper(
        F("unit_price") * F("quantity"), output_field=DecimalField(max_digits=24, decimal_places=4)
    )
    rows = (
        Subscription.all_tenants.filter(status__in=MRR_STATUSES)
        .values("currency", "cycle")
        .annotate(total=Sum(amount))
        .order_by()
    )
    totals: dict[str, Decimal] = {}
    for row in rows:
        months = CYCLE_MONTHS.get(row["cycle"])
        if not months or row["total"] is None:
            continue  # a one-off cycle is not recurring revenue
        totals[row["currency"]] = totals.get(row["currency"], Decimal(0)) + row["total"] / months
    return {cur: quantize(value, cur) for cur, value in sorted(totals.items())}


def overdue_by_currency(*, today: date | None = None) -> dict[str, dict]:
    """Open invoices past their due date: ``{currency: {"amount": Decimal, "count": int}}``."""
    today = today or timezone.localdate()
    rows = (
        Invoice.all_tenants.filter(status=InvoiceStatus.OPEN, due_date__lt=today)
        .values("currency")
        .annotate(amount=Sum("amount_due"), count=Count("id"))
        .order_by("currency")
    )
    return {
        row["currency"]: {"amount": quantize(row["amount"], row["currency"]), "count": row["count"]} for row in rows
    }


@DELETE_GUARDS.register()
def customer_has_billing_history(customer) -> str | None:
    """A customer with invoices or payments is closed, never deleted (the customers' delete guard)."""
    if Invoice.all_tenants.filter(customer=customer).exists() or Payment.all_tenants.filter(customer=customer).exists():
        return "it has invoices or payments"
    return None


@LOGO_KEEPERS.register("billing")
def logo_on_issued_documents(name: str) -> bool:
    """An issued invoice or credit note whose seller snapshot shows this logo file keeps it stored."""
    return (
        Invoice.all_tenants.filter(seller_details__logo=name).exists()
        or CreditNote.all_tenants.filter(seller_details__logo=name).exists()
    )
