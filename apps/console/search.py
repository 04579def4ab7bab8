"""The admin's global search: one box for tenants, customers, domains, invoices, pods and nodes.

Each kind is one bounded query (``LIMIT``): a UUID is looked up by primary key; anything else is
a case-insensitive prefix match (``istartswith``), which PostgreSQL answers from the
``UPPER(column) text_pattern_ops`` indexes that this app's migration 0001 creates, instead of
scanning the table as a ``%term%`` match would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import Q
from django.urls import reverse

from apps.billing.models import Invoice
from apps.cloudpods.models import CloudPod
from apps.customers.models import Customer
from apps.domains.models import Domain
from apps.nodes.models import Node
from apps.tenancy.models import Tenant

LIMIT = 10
MAX_QUERY = 200


@dataclass(frozen=True)
class Kind:
    label: str
    model: type
    fields: tuple[str, ...]  # prefix-matched, each with an index of migration 0001
    describe: object  # obj -> the line shown under the link
    related: tuple[str, ...] = ("tenant",)


def _manager(model):
    return getattr(model, "all_tenants", model._default_manager)


KINDS = [
    Kind("Tenants", Tenant, ("name", "slug"), lambda t: f"{t.slug} · {t.status}", related=()),
    Kind("Customers", Customer, ("name", "email"), lambda c: f"{c.email} · {c.tenant}"),
    Kind("Domains", Domain, ("name",), lambda d: f"{d.status} · {d.tenant}"),
    Kind(
        "Invoices",
        Invoice,
        ("number",),
        lambda i: f"{i.customer} · {i.status} · {i.total} {i.currency}",
        related=("tenant", "customer"),
    ),
    Kind("CloudPods", CloudPod, ("name",), lambda p: f"{p.status} · {p.plan} · {p.node}", related=("tenant", "node")),
    Kind("Nodes", Node, ("hostname",), lambda n: f"{n.status} · {n.tenant}"),
]


def global_search(query: str, *, user, limit: int = LIMIT) -> list[dict]:
    """Up to ``limit`` rows of each kind the operator may view: ``[{label, results: [...]}]``."""
    query = query.strip()[:MAX_QUERY]
    if not query:
        return []
    try:
        pk = uuid.UUID(query)
    except ValueError:
        pk = None
    groups = []
    for kind in KINDS:
        opts = kind.model._meta
        if not user.has_perm(f"{opts.app_label}.view_{opts.model_name}"):
            continue
        if pk is not None:
            where = Q(pk=pk)
        else:
            where = Q()
            for name in kind.fields:
                where |= Q(**{f"{name}__istartswith": query})
        rows = _manager(kind.model).filter(where).select_related(*kind.related).order_by(*kind.fields)[:limit]
        results = [
            {
                "title": str(obj),
                "detail": kind.describe(obj),
                "url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]),
            }
            for obj in rows
        ]
        if results:
            groups.append({"label": kind.label, "results": results})
    return groups
