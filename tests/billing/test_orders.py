from decimal import Decimal

import pytest
from django.urls import reverse

from apps.billing.models import Invoice, Subscription
from apps.catalog.models import Product
from apps.catalog.services import product_create
from apps.jobs.models import Job
from apps.orders.api import OrderViewSet
from apps.orders.models import Order
from apps.orders.services import order_create
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.billing_support import customer_of
from tests.conftest import client_for

D = Decimal


def catalog(fx):
    with fx.scope():
        plan = product_create(tenant=fx.tenant, data={
            "name": "Web Hosting", "slug": "web", "type": "hosting_plan", "visibility": "public",
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": D("8.00"), "setup_fee": D("2.00")}],
        })  # fmt: skip
        domain = product_create(tenant=fx.tenant, data={
            "name": "Domain transfer", "slug": "transfer", "type": "service", "visibility": "public", "stock": 1,
            "prices": [{"currency": "EUR", "cycle": "onetime", "amount": D("12.00"), "setup_fee": D("0")}],
        })  # fmt: skip
    return plan, domain


class TestOrderApi(ApiTestCase):
    viewset = OrderViewSet
    basename = "order"
    roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER, "create": Role.BILLING}

    @pytest.fixture(autouse=True)
    def _catalog(self, tenant_a):
        self.plan, _ = catalog(tenant_a)

    def make(self, fx, seq):
        customer = customer_of(fx, email=f"o{seq}@example.com")
        return order_create(tenant=fx.tenant, customer=customer, items=[{"product": self.plan, "cycle": "monthly"}])

    def create_payload(self, fx, seq):
        customer = customer_of(fx, email=f"n{seq}@example.com")
        return {"customer": str(customer.pk), "items": [{"product": str(self.plan.pk), "cycle": "monthly"}]}


@pytest.mark.django_db
class TestOrderFlow:
    def test_place_accept_pay_activates_and_completes(self, tenant_a, django_capture_on_commit_callbacks):
        plan, domain = catalog(tenant_a)
        customer = customer_of(tenant_a)
        billing = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
        placed = billing.post(reverse("order-list"), {"customer": str(customer.pk), "items": [
            {"product": str(plan.pk), "cycle": "monthly", "quantity": 2, "config": {"domain": "shop.example"}},
            {"product": str(domain.pk), "cycle": "onetime"},
        ]}, format="json")  # fmt: skip
        assert placed.status_code == 201, placed.content
        order = placed.json()
        assert order["status"] == "pending" and order["total"] == "32.00"  # 2 x (8 + 2) + 12
        accepted = billing.post(reverse("order-accept", kwargs={"pk": order["id"]}))
        assert accepted.status_code == 200, accepted.content
        body = accepted.json()
        assert body["status"] == "accepted" and body["invoice"]
        invoice = Invoice.all_tenants.get(pk=body["invoice"])
        assert invoice.status == "open" and invoice.total == D("32.00") and invoice.lines.model.all_tenants.filter(
            invoice=invoice).count() == 3  # fmt: skip
        sub = Subscription.all_tenants.get(pk=body["items"][0]["subscription"])
        assert sub.status == "pending" and sub.config == {"domain": "shop.example"} and sub.quantity == 2
        assert Product.all_tenants.get(pk=domain.pk).stock == 0
        assert billing.post(reverse("order-accept", kwargs={"pk": order["id"]})).status_code == 409
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        with django_capture_on_commit_callbacks(execute=True):
            paid = admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}), {"amount": "32.00",
                              "method": "bank_transfer"}, format="json")  # fmt: skip
        assert paid.json()["status"] == "paid"
        assert Order.all_tenants.get(pk=order["id"]).status == "completed"
        sub.refresh_from_db()
        assert sub.status == "active"
        # The hosting plan's provisioner ran (apps/hosting): with no web node yet it waits and retries.
        job = Job.all_tenants.get(type="subscription.activate", object_id=str(sub.pk))
        assert job.status == "PENDING" and "No active node with the 'web' role" in job.last_error
        assert billing.post(reverse("order-cancel", kwargs={"pk": order["id"]})).status_code == 409

    def test_cancelling_an_unpaid_order_voids_and_gives_stock_back(self, tenant_a):
        plan, domain = catalog(tenant_a)
        customer = customer_of(tenant_a)
        billing = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
        order = billing.post(reverse("order-list"), {"customer": str(customer.pk), "items": [
            {"product": str(plan.pk), "cycle": "monthly"}, {"product": str(domain.pk), "cycle": "onetime"}]},
            format="json").json()  # fmt: skip
        body = billing.post(reverse("order-accept", kwargs={"pk": order["id"]})).json()
        cancelled = billing.post(reverse("order-cancel", kwargs={"pk": order["id"]}))
        assert cancelled.json()["status"] == "cancelled"
        assert Invoice.all_tenants.get(pk=body["invoice"]).status == "void"
        assert Subscription.all_tenants.get(pk=body["items"][0]["subscription"]).status == "cancelled"
        assert Product.all_tenants.get(pk=domain.pk).stock == 1

    def test_bad_orders_are_refused_and_write_nothing(self, tenant_a, tenant_b):
        plan, domain = catalog(tenant_a)
        foreign, _ = catalog(tenant_b)
        customer = customer_of(tenant_a)
        billing = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
        url = reverse("order-list")
        for items, code in (
            ([], 400),
            ([{"product": str(foreign.pk), "cycle": "monthly"}], 400),
            ([{"product": str(plan.pk), "cycle": "annual"}], 400),  # no annual price
            ([{"product": str(plan.pk), "cycle": "monthly", "quantity": 0}], 400),
            ([{"product": str(domain.pk), "cycle": "onetime", "quantity": 2}], 409),  # one left
        ):
            response = billing.post(url, {"customer": str(customer.pk), "items": items}, format="json")
            assert response.status_code == code, (items, response.content)
        assert not Order.all_tenants.exists()
        member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        assert member.post(url, {"customer": str(customer.pk), "items": [{"product": str(plan.pk),
                           "cycle": "monthly"}]}, format="json").status_code == 403  # fmt: skip
