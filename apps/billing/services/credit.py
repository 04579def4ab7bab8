"""The customer credit balance (over-payments, credit notes on paid invoices)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Sum

from apps.customers.models import Customer

from ..models import CreditTransaction


def credit_balance(*, customer: Customer, currency: str) -> Decimal:
    total = CreditTransaction.all_tenants.filter(customer=customer, currency=currency).aggregate(s=Sum("amount"))["s"]
    return total or Decimal(0)


def credit_balances(*, customer: Customer) -> dict[str, Decimal]:
    rows = CreditTransaction.all_tenants.filter(customer=customer).values("currency").annotate(s=Sum("amount"))
    return {row["currency"]: row["s"] for row in rows if row["s"]}
