import pytest
from django.core.exceptions import ValidationError
from django.db.models import Subquery
from rest_framework.test import APIRequestFactory

from apps.customers.models import Contact, Customer
from apps.tenancy.models import Tenant
from apps.tenancy.roles import Role
from apps.tenancy.scoping import ScopeError, all_tenants, current_tenant, tenant_scope
from apps.tenancy.viewsets import TenantReadOnlyViewSet, TenantScopedViewSet
from tests.conftest import client_for


def customer(fx, email):
    with fx.scope():
        return Customer.objects.create(name=email, email=email, currency="USD")


@pytest.mark.django_db
class TestFailClosed:
    def test_every_query_without_a_tenant_raises(self, tenant_a):
        customer(tenant_a, "a@example.com")
        attempts = [
            lambda: list(Customer.objects.all()),
            lambda: Customer.objects.count(),
            lambda: Customer.objects.filter(name="x").exists(),
            lambda: Customer.objects.get(email="a@example.com"),
            lambda: Customer.objects.first(),
            lambda: Customer.objects.values_list("id", flat=True)[0],
            lambda: Customer.objects.update(name="x"),
            lambda: Customer.objects.all().delete(),
            lambda: Customer.objects.get_or_create(email="b@example.com"),
            lambda: list(Tenant.objects.filter(pk__in=Subquery(Customer.objects.values("tenant_id")))),
        ]
        for attempt in attempts:
            with pytest.raises(ScopeError):
                attempt()

    def test_scope_shows_only_that_tenant(self, tenant_a, tenant_b):
        customer(tenant_a, "a@example.com")
        customer(tenant_b, "b@example.com")
        with tenant_scope(tenant_a.tenant):
            assert [c.email for c in Customer.objects.all()] == ["a@example.com"]
            assert current_tenant() == tenant_a.tenant
            assert not Customer.objects.filter(email="b@example.com").exists()
        with all_tenants():
            assert Customer.objects.count() == 2
        assert Customer.all_tenants.count() == 2

    def test_a_none_scope_is_refused_not_everything(self):
        with pytest.raises(ScopeError), tenant_scope(None):
            pass

    def test_save_fills_the_tenant_from_scope_and_refuses_others(self, tenant_a, tenant_b):
        with tenant_a.scope():
            created = Customer.objects.create(name="x", email="x@example.com", currency="USD")
            assert created.tenant_id == tenant_a.tenant.pk
            with pytest.raises(ScopeError):
                Customer(tenant=tenant_b.tenant, name="y", email="y@example.com", currency="USD").save()
        with pytest.raises(ScopeError):
            Customer(name="z", email="z@example.com", currency="USD").save()

    def test_foreign_keys_cannot_cross_tenants(self, tenant_a, tenant_b):
        theirs = customer(tenant_b, "b@example.com")
        with tenant_a.scope(), pytest.raises(ValidationError):
            Contact.objects.create(customer=theirs, name="x", email="x@example.com")
        with all_tenants(), pytest.raises(ValidationError):
            Contact(tenant=tenant_a.tenant, customer_id=theirs.pk, name="x", email="x@example.com").save()
        with all_tenants():
            assert not Contact.objects.exists()

    def test_related_managers_are_scoped_too(self, tenant_a):
        mine = customer(tenant_a, "a@example.com")
        with tenant_a.scope():
            Contact.objects.create(customer=mine, name="c", email="c@example.com")
        with pytest.raises(ScopeError):
            list(mine.contacts.all())
        with tenant_a.scope():
            assert mine.contacts.count() == 1


class TestViewsetGuards:
    def test_overriding_get_queryset_is_refused(self):
        with pytest.raises(TypeError):

            class Sneaky(TenantScopedViewSet):
                def get_queryset(self):
                    return Customer.all_tenants.all()

    def test_overriding_get_permissions_is_refused(self):
        with pytest.raises(TypeError):

            class Open(TenantScopedViewSet):
                def get_permissions(self):
                    return []


@pytest.mark.django_db
class TestRoleMap:
    def test_an_action_missing_from_the_map_is_denied(self, tenant_a):
        class HalfMapped(TenantReadOnlyViewSet):
            queryset = Customer.objects.all()
            from apps.customers.serializers import CustomerSerializer as serializer_class

            required_roles = {"list": Role.VIEWER}

        customer(tenant_a, "a@example.com")
        factory = APIRequestFactory()
        token_client = client_for(tenant_a.owner, tenant_a.tenant)
        auth = token_client._credentials["HTTP_AUTHORIZATION"]
        headers = {"HTTP_AUTHORIZATION": auth, "HTTP_X_TENANT_ID": str(tenant_a.tenant.pk)}
        listed = HalfMapped.as_view({"get": "list"})(factory.get("/x/", **headers))
        assert listed.status_code == 200
        with tenant_a.scope():
            pk = Customer.objects.get().pk
        detail = HalfMapped.as_view({"get": "retrieve"})(factory.get("/x/", **headers), pk=pk)
        assert detail.status_code == 403  # "retrieve" is not in the map, even for the OWNER
