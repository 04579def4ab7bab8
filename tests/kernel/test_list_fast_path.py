"""Issue 21: the list's fast paths answer byte for byte what the general paths answer.

Four shortcuts serve every tenant-scoped list (docs/benchmarks.md): the credentials' query compiled once
per process (``apps.common.prepared``), serializers reading plain attributes without DRF's per-row walk
(``apps.common.serializers.FastReadMixin``), a serializer's fields copied from ones built once per class
(``PrototypeFieldsMixin``), and no FilterSet built when no query parameter reaches a
filter (``apps.common.filters.FilterBackend``). Here every request is made twice, once with the shortcuts
and once with each of them switched back to DRF's, django-filter's and Django's own path, and the two
answers (status, body bytes) must be the same: several resources, roles, a foreign tenant, filters,
ordering, search, numbered and cursor pages, bad parameters.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from apps.accounts import authentication
from apps.common import serializers as common_serializers
from apps.common.filters import FilterBackend
from apps.customers import services as customers
from apps.customers.models import Contact, Customer
from apps.tenancy.roles import Role
from apps.tenancy.scoping import tenant_scope
from tests.conftest import client_for, operator_client_for

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def general_paths():
    """Every shortcut off: DRF's own to_representation and get_fields, the FilterSet always built, the
    credentials' queryset built and compiled on each request."""
    patch = pytest.MonkeyPatch()
    try:
        patch.setattr(
            common_serializers.FastReadMixin,
            "to_representation",
            lambda self, instance: super(common_serializers.FastReadMixin, self).to_representation(instance),
        )
        patch.setattr(
            common_serializers.PrototypeFieldsMixin,
            "get_fields",
            lambda self: super(common_serializers.PrototypeFieldsMixin, self).get_fields(),
        )
        patch.setattr(FilterBackend, "_nothing_to_filter", lambda self, request, view: False)
        patch.setattr(
            authentication._CREDENTIALS, "rows", lambda **values: list(authentication._credentials_query(**values))
        )
        yield
    finally:
        patch.undo()


def both(client, url: str) -> tuple[int, bytes]:
    fast = client.get(url)
    with general_paths():
        general = client.get(url)
    assert (fast.status_code, fast.content) == (general.status_code, general.content), url
    return fast.status_code, fast.content


@pytest.fixture
def data(tenant_a, tenant_b):
    with tenant_scope(tenant_a.tenant):
        made = [
            customers.customer_create(
                tenant=tenant_a.tenant,
                data={
                    "name": f"Customer {i:02}",
                    "email": f"c{i}@example.test",
                    "kind": "company" if i % 3 else "person",
                    "company": "Acme" if i % 2 else "",
                    "country": "DE" if i % 4 else "",
                    "status": "active" if i % 5 else "inactive",
                    "notes": "ünïcode ✓" if i == 7 else "",
                },
            )
            for i in range(12)
        ]
        for i, customer in enumerate(made[:4]):
            for j in range(i + 1):
                role = "billing" if j else "other"
                customers.contact_create(
                    customer=customer, data={"name": f"Contact {i}.{j}", "email": f"k{i}{j}@example.test", "role": role}
                )
    with tenant_scope(tenant_b.tenant):
        customers.customer_create(tenant=tenant_b.tenant, data={"name": "Foreign", "email": "f@example.test"})
    return made


QUERIES = [
    "",
    "?status=active",
    "?status=inactive&kind=company",
    "?country=DE",
    "?email=C3@EXAMPLE.TEST",
    "?ordering=name",
    "?ordering=-email",
    "?ordering=status,-name",
    "?search=Customer 0",
    "?search=acme&ordering=name",
    "?page=2&page_size=5",
    "?page_size=200",
    "?page_mode=cursor&page_size=5",
    "?page_mode=cursor&page_size=4&ordering=name",
    "?unknown=1",
    "?status=bogus",
    "?page_size=0",
    "?page=99",
    "?page_mode=sideways",
    "?created_after=not-a-date",
]


def test_customers_answer_alike_for_every_query_and_role(data, tenant_a):
    since = (timezone.now() - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    for role in (Role.MEMBER, Role.OWNER):
        client = client_for(tenant_a.users[role], tenant_a.tenant)
        for query in [*QUERIES, f"?created_after={since}"]:
            both(client, f"/api/v1/customers/{query}")
    # The cursor's next page, followed.
    client = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    status, _body = both(client, "/api/v1/customers/?page_mode=cursor&page_size=5")
    assert status == 200
    nxt = client.get("/api/v1/customers/?page_mode=cursor&page_size=5").json()["next"]
    assert nxt
    both(client, nxt.replace("http://testserver", ""))


def test_contacts_members_and_audit_answer_alike(data, tenant_a):
    owner = client_for(tenant_a.users[Role.OWNER], tenant_a.tenant)
    contacts = f"/api/v1/customers/{data[3].pk}/contacts/"
    for query in ("", "?role=billing", "?role=nope", "?ordering=-name", "?page_mode=cursor&page_size=2"):
        assert both(owner, contacts + query)[0] in (200, 400)
    both(owner, f"/api/v1/tenants/{tenant_a.tenant.pk}/members/")
    for query in ("", "?page_size=7", "?ordering=created_at", "?action=customer.create"):
        both(owner, f"/api/v1/audit/{query}")


def test_refusals_answer_alike(data, tenant_a, tenant_b):
    member = tenant_a.users[Role.MEMBER]
    assert both(client_for(member, tenant_b.tenant), "/api/v1/customers/")[0] == 404  # a foreign tenant
    assert both(client_for(member), "/api/v1/customers/")[0] in (200, 400)  # no tenant named
    assert both(client_for(None, tenant_a.tenant), "/api/v1/customers/")[0] == 401
    bad = client_for(None, tenant_a.tenant)
    bad.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert both(bad, "/api/v1/customers/")[0] == 401
    assert both(client_for(member, tenant_a.tenant), "/api/v1/audit/")[0] == 403  # below the role


def test_an_operators_platform_wide_list_answers_alike(data, tenant_a):
    staff = tenant_a.users[Role.OWNER]
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    assert both(operator_client_for(staff), "/api/v1/customers/?ordering=name")[0] == 200


def test_the_credentials_query_loads_what_the_queryset_loads(tenant_a):
    from apps.accounts.models import AuthToken, hash_token

    member = tenant_a.users[Role.MEMBER]
    _token, raw = AuthToken.issue(user=member, ttl=timedelta(hours=1))
    values = {"tenant_id": tenant_a.tenant.pk, "key_hash": hash_token(raw)}
    [fast] = authentication._CREDENTIALS.rows(**values)
    [general] = list(authentication._credentials_query(**values))
    assert vars(fast).keys() == vars(general).keys()
    for name, value in vars(general).items():
        if name != "_state":
            assert getattr(fast, name) == value, name
    assert vars(fast.user) | {"_state": None} == vars(general.user) | {"_state": None}
    assert vars(fast.tenant) | {"_state": None} == vars(general.tenant) | {"_state": None}
    assert authentication._CREDENTIALS.rows(tenant_id=tenant_a.tenant.pk, key_hash="nope") == []


def test_contacts_count_is_the_relations_count(data, tenant_a):
    with tenant_scope(tenant_a.tenant):
        expected = dict(Customer.objects.annotate(n=Count("contacts")).values_list("pk", "n"))
    client = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    rows = client.get("/api/v1/customers/?page_size=200").json()["results"]
    assert {row["id"]: row["contacts_count"] for row in rows} == {str(pk): n for pk, n in expected.items()}
    assert sorted(expected.values())[-4:] == [1, 2, 3, 4] and Contact.all_tenants.count() == 10
