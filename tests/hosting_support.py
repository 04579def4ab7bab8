"""Helpers for hosting accounts: a hosting plan in the catalog, an order for it paid by hand
(jobs run in-process after each commit), web and mail nodes."""

from __future__ import annotations

from decimal import Decimal

from django.urls import reverse

from apps.billing.models import Subscription
from apps.catalog.services import product_create
from apps.hosting.models import HostingAccount
from apps.nodes.models import Node
from apps.orders.services import order_accept, order_create
from apps.tenancy.roles import Role
from tests.billing_support import customer_of
from tests.conftest import client_for
from tests.web_support import web_node_in

PLAN = {"websites": 5, "disk_quota_mb": 10240, "bandwidth_gb": 100, "mailboxes": 10, "mail_quota_mb": 2048,
        "databases": 5, "php_versions": ["8.2", "8.3"], "backups_kept": 7, "ssl": True}  # fmt: skip


def plan_in(fx, slug: str = "web-5", config: dict | None = None, amount: str = "10.00", type: str = "hosting_plan"):
    with fx.scope():
        return product_create(tenant=fx.tenant, data={
            "name": slug.replace("-", " ").title(), "slug": slug, "type": type, "visibility": "public",
            "config": PLAN if config is None else config,
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal(amount), "setup_fee": Decimal(0)}],
        })  # fmt: skip


def mail_node_in(fx, hostname: str = "mail-1") -> Node:
    with fx.scope():
        node = Node.objects.filter(hostname=hostname).first()
        return node or Node.objects.create(
            tenant=fx.tenant, hostname=hostname, roles=["mail"], vcpu=1, memory_mb=1024, disk_gb=10, max_pods=0
        )


def nodes_in(fx) -> None:
    web_node_in(fx)
    mail_node_in(fx)


def order_paid(fx, capture, product, *, domain: str | None, email: str = "buyer@example.com", config=None):
    """Order ``product`` for a customer, accept it, pay its invoice by bank transfer through the API;
    the jobs (activation, website, mail) run in-process. Answers the subscription."""
    customer = customer_of(fx, email=email)
    item = {"product": product, "cycle": "monthly", "config": config or ({"domain": domain} if domain else {})}
    with fx.scope():
        order = order_create(tenant=fx.tenant, customer=customer, items=[item])
        order = order_accept(order=order)
    admin = client_for(fx.users[Role.ADMIN], fx.tenant)
    with capture(execute=True):
        paid = admin.post(reverse("invoice-pay", kwargs={"pk": order.invoice_id}),
                          {"amount": f"{order.total:.2f}", "method": "bank_transfer"}, format="json")  # fmt: skip
    assert paid.status_code == 200, paid.content
    return Subscription.all_tenants.get(order_item__order=order)


def account_of(sub) -> HostingAccount:
    return HostingAccount.all_tenants.get(subscription=sub)
