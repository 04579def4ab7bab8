"""A customer's page in the admin as the operator's home for that customer (WHMCS's client summary):
services, invoices and what is owed, credit balance, and recent activity, read with a constant number
of queries whatever the customer holds.

The customer app knows no billing or hosting module (they know it), so their models are looked up by
name; a module that is not installed simply has no section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db.models import CharField, Count, Q, Subquery, Sum
from django.db.models.functions import Cast

from .models import Contact, Customer

LATEST = 8


@dataclass
class Section:
    title: str
    model: Any  # for the "all" link and the row links
    rows: list
    count: int
    by_status: dict[str, int] = field(default_factory=dict)
    filter_query: str = ""


def _model(label: str):
    try:
        return apps.get_model(label)
    except LookupError:
        return None


def _ids_as_text(qs):
    """The rows' ids as text, as a subquery (audit events and pods keep ids as text)."""
    return Subquery(qs.annotate(id_text=Cast("id", CharField())).values("id_text"))


def customer_summary(customer: Customer) -> dict[str, Any]:
    """Everything the customer's page shows above the form (one query per line below)."""
    summary: dict[str, Any] = {"customer": customer, "sections": []}
    Subscription, Invoice = _model("billing.Subscription"), _model("billing.Invoice")
    CreditTransaction = _model("billing.CreditTransaction")
    if Subscription is not None:
        subs = Subscription.all_tenants.filter(customer=customer)
        statuses = dict(subs.order_by().values_list("status").annotate(n=Count("id")))
        latest = list(subs.select_related("product").order_by("-created_at")[:LATEST])
        summary["sections"].append(
            Section(
                "Subscriptions",
                Subscription,
                latest,
                sum(statuses.values()),
                statuses,
                f"customer__id__exact={customer.pk}",
            )
        )
        CloudPod = _model("cloudpods.CloudPod")
        if CloudPod is not None:
            pods = CloudPod.all_tenants.filter(subscription__in=_ids_as_text(subs.order_by()))
            rows = list(pods.order_by("-created_at")[: LATEST + 1])
            summary["sections"].append(Section("CloudPods", CloudPod, rows[:LATEST], len(rows)))
    for label, title, query in (
        ("websites.Website", "Websites", "customer__id__exact"),
        ("domains.Domain", "Domains", "customer__id__exact"),
    ):
        model = _model(label)
        if model is not None:
            rows = list(model.all_tenants.filter(customer=customer).order_by("-created_at")[: LATEST + 1])
            summary["sections"].append(
                Section(title, model, rows[:LATEST], len(rows), filter_query=f"{query}={customer.pk}")
            )
    if Invoice is not None:
        invoices = Invoice.all_tenants.filter(customer=customer)
        summary["invoices"] = list(invoices.order_by("-created_at")[:LATEST])
        totals = (
            invoices.order_by()
            .values("currency", "status")
            .annotate(n=Count("id"), due=Sum("amount_due"), total=Sum("total"))
        )
        owed: dict[str, Decimal] = {}
        paid: dict[str, Decimal] = {}
        counts: dict[str, int] = {}
        for row in totals:
            counts[row["status"]] = counts.get(row["status"], 0) + row["n"]
            if row["status"] in ("open", "uncollectible"):
                owed[row["currency"]] = owed.get(row["currency"], Decimal(0)) + (row["due"] or 0)
            if row["status"] == "paid":
                paid[row["currency"]] = paid.get(row["currency"], Decimal(0)) + (row["total"] or 0)
        summary["invoice_counts"] = counts
        summary["owed"] = owed
        summary["paid"] = paid
        summary["invoice_filter"] = f"customer__id__exact={customer.pk}"
    if CreditTransaction is not None:
        balances = CreditTransaction.all_tenants.filter(customer=customer).order_by().values("currency")
        summary["credit"] = {
            r["currency"]: r["balance"] for r in balances.annotate(balance=Sum("amount")) if r["balance"]
        }
    SavedPaymentMethod = _model("billing.SavedPaymentMethod")
    if SavedPaymentMethod is not None:  # saved cards, read-only: the customer adds them at Stripe
        summary["cards"] = list(SavedPaymentMethod.all_tenants.filter(customer=customer)[:LATEST])
    summary["activity"] = _activity(customer, Invoice, Subscription)
    return summary


def _activity(customer: Customer, Invoice, Subscription) -> list:
    """The latest audit events of the customer and of its invoices, subscriptions, payments and orders."""
    AuditEvent = apps.get_model("audit", "AuditEvent")
    mine = Q(object_type="customers.customer", object_id=str(customer.pk))
    mine |= Q(
        object_type="customers.contact", object_id__in=_ids_as_text(Contact.all_tenants.filter(customer=customer))
    )
    for label in ("billing.Invoice", "billing.Subscription", "billing.Payment", "billing.CreditNote", "orders.Order"):
        model = _model(label)
        if model is not None:
            mine |= Q(
                object_type=model._meta.label_lower,
                object_id__in=_ids_as_text(model.all_tenants.filter(customer=customer)),
            )
    return list(AuditEvent.objects.filter(mine).select_related("actor").order_by("-created_at")[:15])
