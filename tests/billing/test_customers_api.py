import pytest
from django.urls import reverse
from guardian.shortcuts import assign_perm

from apps.customers.api import ContactViewSet, CustomerViewSet
from apps.customers.models import Contact, Customer
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for


def customer_in(fx, seq, **extra):
    return Customer.objects.create(
        tenant=fx.tenant, name=f"Customer {seq}", email=f"c{seq}@example.com", currency="USD", **extra
    )


class TestCustomerApi(ApiTestCase):
    viewset = CustomerViewSet
    basename = "customer"
    roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.BILLING,
        "update": Role.BILLING,
        "partial_update": Role.BILLING,
        "destroy": Role.ADMIN,
    }

    def make(self, fx, seq):
        return customer_in(fx, seq)

    def create_payload(self, fx, seq):
        return {"name": f"New {seq}", "email": f"new{seq}@example.com", "country": "NL"}

    def update_payload(self, fx, obj, seq):
        return {"name": f"Renamed {seq}", "email": obj.email, "notes": "VIP"}


class TestContactApi(ApiTestCase):
    viewset = ContactViewSet
    basename = "customer-contact"
    roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.BILLING,
        "update": Role.BILLING,
        "partial_update": Role.BILLING,
        "destroy": Role.BILLING,
    }

    @pytest.fixture(autouse=True)
    def _parent(self, tenant_a):
        with tenant_a.scope():
            self.parent = customer_in(tenant_a, 0)

    def url_kwargs(self, fx):
        return {"customer_pk": str(self.parent.pk)}

    def make(self, fx, seq):
        return Contact.objects.create(
            tenant=fx.tenant, customer=self.parent, name=f"Contact {seq}", email=f"p{seq}@example.com", role="billing"
        )

    def create_payload(self, fx, seq):
        return {"name": f"Contact {seq}", "email": f"n{seq}@example.com", "role": "technical"}

    def update_payload(self, fx, obj, seq):
        return {"name": "Changed", "email": obj.email, "role": "primary"}


@pytest.mark.django_db
class TestCustomerRules:
    def test_defaults_and_validation(self, tenant_a):
        client = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
        url = reverse("customer-list")
        ok = client.post(url, {"name": "Jane", "email": "JANE@Example.com"}, format="json")
        assert ok.status_code == 201, ok.content
        assert ok.data["currency"] == tenant_a.tenant.default_currency
        assert ok.data["email"] == "jane@example.com"
        assert ok.data["status"] == "active"
        for bad in (
            {"name": "  ", "email": "x@example.com"},
            {"name": "X", "email": "not-an-email"},
            {"name": "X", "email": "y@example.com", "currency": "XXX"},
            {"name": "X", "email": "z@example.com", "country": "ZZ"},
            {"email": "w@example.com"},
        ):
            response = client.post(url, bad, format="json")
            assert response.status_code == 400, (bad, response.content)
        dup = client.post(url, {"name": "Jane 2", "email": "jane@example.com"}, format="json")
        assert dup.status_code == 400 and "email" in dup.data
        with tenant_a.scope():
            assert Customer.objects.count() == 1

    def test_same_email_in_another_tenant_is_fine(self, tenant_a, tenant_b):
        for fx in (tenant_a, tenant_b):
            client = client_for(fx.owner, fx.tenant)
            response = client.post(reverse("customer-list"), {"name": "Jo", "email": "jo@example.com"}, format="json")
            assert response.status_code == 201

    def test_search_and_filters(self, tenant_a):
        with tenant_a.scope():
            customer_in(tenant_a, 1, company="Blue Whale Ltd", country="DE")
            customer_in(tenant_a, 2, status="closed")
            customer_in(tenant_a, 3, tax_id="GB999")
        client = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        url = reverse("customer-list")
        assert client.get(url, {"search": "whale"}).json()["count"] == 1
        assert client.get(url, {"search": "GB999"}).json()["count"] == 1
        assert client.get(url, {"status": "closed"}).json()["count"] == 1
        assert client.get(url, {"country": "DE"}).json()["count"] == 1
        names = [r["name"] for r in client.get(url, {"ordering": "name"}).json()["results"]]
        assert names == sorted(names)
        assert client.get(url, {"status": "bogus"}).status_code == 400

    def test_guardian_grant_lets_a_member_edit_one_customer(self, tenant_a):
        member = tenant_a.users[Role.MEMBER]
        with tenant_a.scope():
            granted = customer_in(tenant_a, 1)
            other = customer_in(tenant_a, 2)
        assign_perm("customers.change_customer", member, granted)
        client = client_for(member, tenant_a.tenant)
        ok = client.patch(reverse("customer-detail", kwargs={"pk": granted.pk}), {"notes": "hi"}, format="json")
        assert ok.status_code == 200, ok.content
        denied = client.patch(reverse("customer-detail", kwargs={"pk": other.pk}), {"notes": "hi"}, format="json")
        assert denied.status_code == 403
        assert client.delete(reverse("customer-detail", kwargs={"pk": granted.pk})).status_code == 403

    def test_a_superuser_member_gets_no_grant_it_was_not_given(self, tenant_a):
        """Django answers has_perm yes to every superuser; inside a tenant a password-only superuser
        is its role, and a grant must really be there."""
        viewer = tenant_a.users[Role.VIEWER]
        viewer.is_superuser = viewer.is_staff = True
        viewer.save()
        with tenant_a.scope():
            customer = customer_in(tenant_a, 1)
        client = client_for(viewer, tenant_a.tenant)
        url = reverse("customer-detail", kwargs={"pk": customer.pk})
        assert client.patch(url, {"notes": "hi"}, format="json").status_code == 403
        assign_perm("customers.change_customer", viewer, customer)
        assert client.patch(url, {"notes": "hi"}, format="json").status_code == 200

    def test_audit_records_before_and_after(self, tenant_a):
        from apps.audit.models import AuditEvent

        with tenant_a.scope():
            customer = customer_in(tenant_a, 1)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        response = client.patch(
            reverse("customer-detail", kwargs={"pk": customer.pk}),
            {"name": "New name"},
            format="json",
            HTTP_X_REQUEST_ID="req-abcdef123",
        )
        assert response.status_code == 200
        event = AuditEvent.objects.get(action="customer.update", object_id=str(customer.pk))
        assert event.changes == {"name": ["Customer 1", "New name"]}
        assert event.request_id == "req-abcdef123"
        assert event.ip == "127.0.0.1"
        assert event.tenant_id == tenant_a.tenant.pk
        assert response["X-Request-ID"] == "req-abcdef123"

    def test_contact_of_foreign_customer_is_404(self, tenant_a, tenant_b):
        with tenant_a.scope():
            customer = customer_in(tenant_a, 1)
        client = client_for(tenant_b.owner, tenant_b.tenant)
        url = reverse("customer-contact-list", kwargs={"customer_pk": customer.pk})
        assert client.get(url).status_code == 404
        response = client.post(url, {"name": "X", "email": "x@example.com"}, format="json")
        assert response.status_code == 404
        with tenant_a.scope():
            assert not Contact.objects.exists()
