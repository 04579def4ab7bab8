"""The portal's test world: two tenants; tenant A has two customers, tenant B one; each customer has an
owner, a billing and a technical portal user, an issued invoice and an accepted order (a pending
subscription)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.test import Client
from rest_framework.test import APIClient

from apps.billing.services import invoices as invoice_services
from apps.catalog.services import product_create
from apps.customers.models import Customer
from apps.orders.services import order_accept, order_create
from apps.portal import services
from apps.portal.models import PortalRole, PortalSession, PortalUser
from apps.tenancy.scoping import tenant_scope

PASSWORD = "portal-pass-2026-ok"
ROLES = (PortalRole.OWNER, PortalRole.BILLING, PortalRole.TECHNICAL)


@dataclass
class CustomerWorld:
    tenant: object
    customer: Customer
    users: dict = field(default_factory=dict)
    invoice: object = None
    order: object = None
    subscription: object = None
    plan: object = None


def catalog(tenant):
    with tenant_scope(tenant):
        return product_create(
            tenant=tenant,
            data={
                "name": "Web Hosting",
                "slug": "web",
                "type": "hosting_plan",
                "visibility": "public",
                "prices": [
                    {"currency": "EUR", "cycle": "monthly", "amount": Decimal("8.00"), "setup_fee": Decimal("2.00")}
                ],
            },
        )


def make_customer(tenant, tag: str, plan) -> CustomerWorld:
    with tenant_scope(tenant):
        customer = Customer.objects.create(name=f"Customer {tag}", email=f"{tag}@cust.test", currency="EUR")
        world = CustomerWorld(tenant=tenant, customer=customer, plan=plan)
        for role in ROLES:
            user = PortalUser(tenant=tenant, customer=customer, email=f"{role}.{tag}@cust.test", role=role)
            user.set_password(PASSWORD)
            user.email_verified_at = user.password_changed_at
            user.save()
            world.users[role] = user
        draft = invoice_services.invoice_create(
            tenant=tenant,
            customer=customer,
            currency="EUR",
            lines=[{"description": f"Support {tag}", "quantity": "1", "unit_price": "10.00", "tax_rate": "21"}],
        )
        world.invoice = invoice_services.invoice_issue(invoice=draft)
        order = order_create(
            tenant=tenant,
            customer=customer,
            items=[{"product": plan, "cycle": "monthly", "config": {"domain": f"{tag}.example"}}],
        )
        world.order = order_accept(order=order)
        world.subscription = world.order.items.first().subscription
    return world


def page_client(user: PortalUser) -> Client:
    """A browser logged in to ``user``'s portal, through the real login form."""
    client = Client()
    tenant = user.customer.tenant
    response = client.post(f"/portal/{tenant.slug}/login/", {"email": user.email, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    return client


def api_client(user: PortalUser) -> APIClient:
    with tenant_scope(user.customer.tenant):
        _session, raw = services.login(
            tenant=user.customer.tenant, email=user.email, password=PASSWORD, kind=PortalSession.Kind.API
        )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def saved_card(world: CustomerWorld):
    """A card saved for the world's customer (as ``setup_intent.succeeded`` leaves it), on an account
    the tenant has not connected: removing it calls no Stripe."""
    from apps.billing.models import SavedPaymentMethod

    n = SavedPaymentMethod.all_tenants.count() + 1
    with tenant_scope(world.tenant):
        return SavedPaymentMethod.objects.create(
            customer=world.customer, account="acct_1NotConnected0", stripe_customer_id=f"cus_iso_{n}",
            stripe_payment_method_id=f"pm_iso_{world.customer.pk.hex[:8]}_{n}", brand="visa", last4="4242",
            exp_month=12, exp_year=2031,
        )  # fmt: skip
