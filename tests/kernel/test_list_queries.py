"""Issue 21: a tenant-scoped, role-checked list costs at most 3 queries (credentials, membership, tenant and
its security policy in one; the count; the page), reads nothing across requests (a revoked session, a
removed member or a lowered role is refused on the very next request), and ``?page_mode=cursor`` pages by
keyset without the count."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.accounts.models import AuthToken
from apps.customers.models import Customer
from apps.security.models import SecurityPolicy
from apps.tenancy import services as tenancy
from apps.tenancy.models import Membership
from apps.tenancy.roles import Role
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/customers/"


def _customers(tenant, n: int) -> None:
    Customer.all_tenants.bulk_create(
        [Customer(tenant=tenant, name=f"Customer {i:03}", email=f"c{i}@example.test") for i in range(n)]
    )


def _warm(client) -> None:
    # The first request of a session writes its last_used_at (at most once a minute): not a read's cost.
    assert client.get(URL).status_code == 200


def test_a_members_list_of_50_costs_at_most_3_queries(tenant_a, tenant_b, django_assert_max_num_queries):
    _customers(tenant_a.tenant, 60)
    _customers(tenant_b.tenant, 5)
    client = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    _warm(client)
    with django_assert_max_num_queries(3):
        response = client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 60 and len(body["results"]) == 50
    assert all(row["name"].startswith("Customer ") for row in body["results"])


def test_a_tenants_security_policy_is_read_in_the_same_query_and_still_enforced(
    tenant_a, django_assert_max_num_queries
):
    _customers(tenant_a.tenant, 3)
    SecurityPolicy.all_tenants.create(tenant=tenant_a.tenant, session_max_lifetime_hours=1)
    client = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    _warm(client)
    with django_assert_max_num_queries(3):
        assert client.get(URL).status_code == 200
    # The preloaded policy is the real one: a session older than the policy allows is refused.
    AuthToken.objects.filter(user=tenant_a.users[Role.MEMBER]).update(
        created_at=timezone.now() - timezone.timedelta(hours=2)
    )
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["code"] == "tenant_session_expired"
    SecurityPolicy.all_tenants.filter(tenant=tenant_a.tenant).update(ip_allowlist=["192.0.2.0/24"])
    AuthToken.objects.filter(user=tenant_a.users[Role.MEMBER]).update(created_at=timezone.now())
    assert client.get(URL).status_code == 403


def test_a_revoked_session_is_refused_on_the_next_request(tenant_a):
    client = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    _warm(client)
    AuthToken.objects.filter(user=tenant_a.users[Role.MEMBER]).update(revoked_at=timezone.now())
    assert client.get(URL).status_code == 401


def test_a_removed_member_is_refused_on_the_next_request(tenant_a):
    member = tenant_a.users[Role.MEMBER]
    client = client_for(member, tenant_a.tenant)
    _warm(client)
    membership = Membership.objects.get(tenant=tenant_a.tenant, user=member)
    tenancy.member_remove(membership=membership, actor=tenant_a.owner, actor_role=Role.OWNER)
    assert client.get(URL).status_code == 404


def test_a_lowered_role_is_refused_on_the_next_request(tenant_a):
    billing = tenant_a.users[Role.BILLING]
    client = client_for(billing, tenant_a.tenant)
    created = client.post(URL, {"name": "Before", "email": "before@example.test"}, format="json")
    assert created.status_code == 201, created.content
    membership = Membership.objects.get(tenant=tenant_a.tenant, user=billing)
    tenancy.member_change_role(membership=membership, actor_role=Role.OWNER, role=Role.VIEWER)
    assert client.post(URL, {"name": "After", "email": "after@example.test"}, format="json").status_code == 403
    assert client.get(URL).status_code == 403  # customers are read from MEMBER up


def test_a_suspended_tenant_is_refused_with_the_preloaded_tenant(tenant_a):
    client = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    _warm(client)
    type(tenant_a.tenant).objects.filter(pk=tenant_a.tenant.pk).update(status="suspended")
    assert client.get(URL).status_code == 403


def test_a_foreign_tenant_is_not_found_whatever_the_token(tenant_a, tenant_b):
    client = client_for(tenant_a.users[Role.OWNER], tenant_b.tenant)
    assert client.get(URL).status_code == 404


def test_cursor_pages_go_through_every_row_once_without_a_count(tenant_a, django_assert_max_num_queries):
    _customers(tenant_a.tenant, 120)
    client = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    _warm(client)
    seen: list[str] = []
    url = f"{URL}?page_mode=cursor&ordering=name"
    pages = 0
    while url:
        with django_assert_max_num_queries(2):
            response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert "count" not in body
        seen += [row["name"] for row in body["results"]]
        url = body["next"]
        pages += 1
    assert pages == 3
    assert seen == sorted(f"Customer {i:03}" for i in range(120))


def test_the_page_mode_is_checked(tenant_a):
    client = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    response = client.get(f"{URL}?page_mode=sideways")
    assert response.status_code == 400
    assert b"page_mode" in response.content
    default = client.get(URL).json()
    assert set(default) >= {"count", "next", "previous", "results"}


# --- naming no tenant (no X-Tenant-ID): the caller's only tenant, read with the credentials -------------


def test_naming_no_tenant_reads_the_only_membership_with_the_credentials(
    tenant_a, tenant_b, django_assert_max_num_queries
):
    _customers(tenant_a.tenant, 60)
    _customers(tenant_b.tenant, 5)
    client = client_for(tenant_a.users[Role.MEMBER])  # no X-Tenant-ID: the member's one tenant
    _warm(client)
    with django_assert_max_num_queries(3):
        response = client.get(URL)
    assert response.status_code == 200
    assert response.json()["count"] == 60


def test_naming_no_tenant_with_two_memberships_still_asks_for_the_header(tenant_a, tenant_b):
    member = tenant_a.users[Role.MEMBER]
    Membership.objects.create(tenant=tenant_b.tenant, user=member, role=Role.VIEWER)
    response = client_for(member).get(URL)
    assert response.status_code == 400
    assert response.json() == {"X-Tenant-ID": ["Required: you belong to more than one tenant."]}


def test_naming_no_tenant_reads_nothing_across_requests(tenant_a):
    member = tenant_a.users[Role.MEMBER]
    client = client_for(member)
    _warm(client)
    SecurityPolicy.all_tenants.create(tenant=tenant_a.tenant, ip_allowlist=["192.0.2.0/24"])
    assert client.get(URL).status_code == 403  # the tenant's policy, read with the credentials
    SecurityPolicy.all_tenants.filter(tenant=tenant_a.tenant).delete()
    type(tenant_a.tenant).objects.filter(pk=tenant_a.tenant.pk).update(status="suspended")
    assert client.get(URL).status_code == 403
    type(tenant_a.tenant).objects.filter(pk=tenant_a.tenant.pk).update(status="active")
    assert client.get(URL).status_code == 200
    membership = Membership.objects.get(tenant=tenant_a.tenant, user=member)
    tenancy.member_remove(membership=membership, actor=tenant_a.owner, actor_role=Role.OWNER)
    # No membership left: the token alone (a user of no tenant), and a list of a tenant's rows needs one.
    response = client.get(URL)
    assert response.status_code == 403
    assert response.json()["detail"] == "Select a tenant you belong to (X-Tenant-ID)."
    assert client.get("/api/v1/auth/user/").status_code == 200  # the token itself is still good
