import re

import pytest
from django.core import mail
from django.urls import reverse
from rest_framework.exceptions import PermissionDenied

from apps.audit.models import AuditEvent
from apps.tenancy.api import TenantViewSet
from apps.tenancy.models import Invitation, Membership, Tenant
from apps.tenancy.resolution import REQUEST_CHECKS, register_request_check
from apps.tenancy.roles import Role
from tests.conftest import client_for, make_user


def members_url(tenant, member=None):
    if member is None:
        return reverse("tenant-member-list", kwargs={"tenant_pk": tenant.pk})
    return reverse("tenant-member-detail", kwargs={"tenant_pk": tenant.pk, "pk": member.pk})


def membership(fx, role):
    return Membership.objects.get(tenant=fx.tenant, user=fx.users[role])


@pytest.mark.django_db
class TestTenantsApi:
    covers = [TenantViewSet]

    def test_create_makes_me_owner_and_lists_only_mine(self, tenant_b):
        user = make_user("founder@example.com")
        client = client_for(user)
        response = client.post(
            "/api/v1/tenants/", {"name": "Founder Hosting", "default_currency": "EUR"}, format="json"
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["role"] == "OWNER" and body["default_currency"] == "EUR" and body["slug"]
        listed = client.get("/api/v1/tenants/").json()
        assert [t["id"] for t in listed["results"]] == [body["id"]]
        assert listed["results"][0]["role"] == "OWNER"
        assert client.get(f"/api/v1/tenants/{tenant_b.tenant.pk}/").status_code == 404
        assert AuditEvent.objects.filter(action="tenant.create", tenant_id=body["id"]).exists()

    def test_create_validation(self):
        client = client_for(make_user("x@example.com"))
        assert client.post("/api/v1/tenants/", {"name": "  "}, format="json").status_code == 400
        assert (
            client.post("/api/v1/tenants/", {"name": "A", "default_currency": "ZZZ"}, format="json").status_code == 400
        )
        assert client.post("/api/v1/tenants/", {}, format="json").status_code == 400
        assert not Tenant.objects.exists()

    def test_anonymous_is_401(self):
        assert client_for().get("/api/v1/tenants/").status_code == 401
        assert client_for().post("/api/v1/tenants/", {"name": "x"}, format="json").status_code == 401

    def test_roles_in_list_and_update_rights(self, tenant_a):
        for role in Role:
            client = client_for(tenant_a.users[role])
            row = client.get("/api/v1/tenants/").json()["results"][0]
            assert row["role"] == role.value
            response = client.patch(f"/api/v1/tenants/{tenant_a.tenant.pk}/", {"name": f"By {role}"}, format="json")
            assert response.status_code == (200 if role.includes(Role.ADMIN) else 403), role

    def test_idempotent_tenant_create(self):
        client = client_for(make_user("idem@example.com"))
        first = client.post("/api/v1/tenants/", {"name": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
        again = client.post("/api/v1/tenants/", {"name": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
        assert first.status_code == again.status_code == 201
        assert first.json()["id"] == again.json()["id"]
        assert Tenant.objects.count() == 1


@pytest.mark.django_db
class TestTenantSelection:
    def test_single_tenant_user_may_omit_the_header(self, tenant_a):
        assert client_for(tenant_a.users[Role.MEMBER]).get("/api/v1/customers/").status_code == 200

    def test_header_required_with_two_tenants(self, tenant_a, tenant_b):
        user = tenant_a.users[Role.OWNER]
        Membership.objects.create(tenant=tenant_b.tenant, user=user, role=Role.VIEWER)
        client = client_for(user)
        response = client.get("/api/v1/customers/")
        assert response.status_code == 400 and "X-Tenant-ID" in response.json()
        assert client_for(user, tenant_a.tenant).get("/api/v1/customers/").status_code == 200
        # In B the same user is only a VIEWER: customer data is MEMBER+.
        assert client_for(user, tenant_b.tenant).get("/api/v1/customers/").status_code == 403

    def test_bad_and_foreign_tenant_header(self, tenant_a, tenant_b):
        client = client_for(tenant_a.owner)
        assert client.get("/api/v1/customers/", HTTP_X_TENANT_ID="not-a-uuid").status_code == 400
        assert client.get("/api/v1/customers/", HTTP_X_TENANT_ID=str(tenant_b.tenant.pk)).status_code == 404
        assert (
            client.get("/api/v1/customers/", HTTP_X_TENANT_ID="00000000-0000-0000-0000-000000000000").status_code == 404
        )

    def test_user_without_tenant_gets_403(self, db):
        client = client_for(make_user("lonely@example.com"))
        assert client.get("/api/v1/customers/").status_code == 403

    def test_suspended_tenant_is_refused(self, tenant_a):
        Tenant.objects.filter(pk=tenant_a.tenant.pk).update(status=Tenant.Status.SUSPENDED)
        assert client_for(tenant_a.owner, tenant_a.tenant).get("/api/v1/customers/").status_code == 403


@pytest.mark.django_db
class TestMembers:
    def test_adding_an_existing_user_invites_them_and_they_join_by_accepting(self, tenant_a):
        # Was: an existing account was attached at once ("active"). Now nobody joins without consent.
        newcomer = make_user("newcomer@example.com")
        client = client_for(tenant_a.users[Role.ADMIN])
        response = client.post(
            members_url(tenant_a.tenant), {"email": "NEWCOMER@example.com", "role": "BILLING"}, format="json"
        )
        assert response.status_code == 201, response.content
        assert response.json()["status"] == "invited" and response.json()["role"] == "BILLING"
        assert not Membership.objects.filter(tenant=tenant_a.tenant, user=newcomer).exists()
        again = client.post(
            members_url(tenant_a.tenant), {"email": "newcomer@example.com", "role": "MEMBER"}, format="json"
        )
        assert again.status_code == 409 and again.json()["code"] == "already_invited"
        mine = client_for(newcomer).get("/api/v1/invitations/").json()["results"]
        assert [(i["tenant"], i["role"]) for i in mine] == [(str(tenant_a.tenant.pk), "BILLING")]
        joined = client_for(newcomer).post(f"/api/v1/invitations/{mine[0]['id']}/accept/")
        assert joined.status_code == 201, joined.content
        assert Membership.objects.get(tenant=tenant_a.tenant, user=newcomer).role == "BILLING"
        member = client.post(members_url(tenant_a.tenant), {"email": "newcomer@example.com"}, format="json")
        assert member.status_code == 409 and member.json()["code"] == "already_member"

    def test_unknown_email_gets_an_invitation_then_joins(self, tenant_a, django_capture_on_commit_callbacks):
        client = client_for(tenant_a.users[Role.ADMIN])
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                members_url(tenant_a.tenant), {"email": "future@example.com", "role": "MEMBER"}, format="json"
            )
        assert response.status_code == 201, response.content
        assert response.json()["status"] == "invited"
        assert len(mail.outbox) == 1 and mail.outbox[0].to == ["future@example.com"]
        token = re.search(r"token=([\w-]+)", mail.outbox[0].body).group(1)
        assert Invitation.objects.get().token_hash != token
        future = make_user("future@example.com")
        other = make_user("someone-else@example.com")
        accept = "/api/v1/tenants/accept-invitation/"
        assert client_for(other).post(accept, {"token": token}, format="json").status_code == 404
        joined = client_for(future).post(accept, {"token": token}, format="json")
        assert joined.status_code == 201, joined.content
        assert Membership.objects.get(tenant=tenant_a.tenant, user=future).role == "MEMBER"
        assert client_for(future).post(accept, {"token": token}, format="json").status_code == 409

    def test_only_owner_grants_owner(self, tenant_a):
        target = membership(tenant_a, Role.MEMBER)
        admin = client_for(tenant_a.users[Role.ADMIN])
        assert admin.patch(members_url(tenant_a.tenant, target), {"role": "OWNER"}, format="json").status_code == 403
        assert (
            admin.post(
                members_url(tenant_a.tenant),
                {"email": make_user("o@example.com").email, "role": "OWNER"},
                format="json",
            ).status_code
            == 403
        )
        owner = client_for(tenant_a.owner)
        assert owner.patch(members_url(tenant_a.tenant, target), {"role": "OWNER"}, format="json").status_code == 200
        target.refresh_from_db()
        assert target.role == "OWNER"

    def test_admin_cannot_touch_an_owner(self, tenant_a):
        owner_membership = membership(tenant_a, Role.OWNER)
        admin = client_for(tenant_a.users[Role.ADMIN])
        url = members_url(tenant_a.tenant, owner_membership)
        assert admin.patch(url, {"role": "VIEWER"}, format="json").status_code == 403
        assert admin.delete(url).status_code == 403
        owner_membership.refresh_from_db()
        assert owner_membership.role == "OWNER"

    def test_last_owner_cannot_leave_or_be_demoted(self, tenant_a):
        owner_membership = membership(tenant_a, Role.OWNER)
        owner = client_for(tenant_a.owner)
        url = members_url(tenant_a.tenant, owner_membership)
        assert owner.patch(url, {"role": "ADMIN"}, format="json").status_code == 409
        assert owner.delete(url).status_code == 409
        second = membership(tenant_a, Role.ADMIN)
        assert owner.patch(members_url(tenant_a.tenant, second), {"role": "OWNER"}, format="json").status_code == 200
        assert owner.delete(url).status_code == 204
        assert not Membership.objects.filter(pk=owner_membership.pk).exists()

    def test_anyone_may_leave_but_not_remove_others(self, tenant_a):
        viewer = client_for(tenant_a.users[Role.VIEWER])
        other = membership(tenant_a, Role.MEMBER)
        assert viewer.delete(members_url(tenant_a.tenant, other)).status_code == 403
        mine = membership(tenant_a, Role.VIEWER)
        assert viewer.delete(members_url(tenant_a.tenant, mine)).status_code == 204
        assert client_for(tenant_a.users[Role.VIEWER]).get("/api/v1/tenants/").json()["count"] == 0

    def test_role_changes_and_removals_are_audited(self, tenant_a):
        target = membership(tenant_a, Role.MEMBER)
        client = client_for(tenant_a.users[Role.ADMIN])
        client.patch(members_url(tenant_a.tenant, target), {"role": "BILLING"}, format="json")
        event = AuditEvent.objects.get(action="member.role_change")
        assert event.changes == {"role": ["MEMBER", "BILLING"]}
        assert event.tenant_id == tenant_a.tenant.pk
        client.delete(members_url(tenant_a.tenant, target))
        assert AuditEvent.objects.filter(action="member.remove", object_id=str(target.pk)).exists()

    def test_invalid_role_is_400(self, tenant_a):
        client = client_for(tenant_a.owner)
        target = membership(tenant_a, Role.MEMBER)
        assert client.patch(members_url(tenant_a.tenant, target), {"role": "KING"}, format="json").status_code == 400
        assert (
            client.post(members_url(tenant_a.tenant), {"email": "bad", "role": "MEMBER"}, format="json").status_code
            == 400
        )

    def test_invitation_revoke(self, tenant_a):
        client = client_for(tenant_a.users[Role.ADMIN])
        created = client.post(members_url(tenant_a.tenant), {"email": "later@example.com"}, format="json").json()
        url = reverse("tenant-invitation-detail", kwargs={"tenant_pk": tenant_a.tenant.pk, "pk": created["id"]})
        assert client.delete(url).status_code == 204
        assert client.delete(url).status_code == 409
        listed = client.get(reverse("tenant-invitation-list", kwargs={"tenant_pk": tenant_a.tenant.pk})).json()
        assert listed["results"][0]["status"] == "revoked"


def _refuse_marked(request, ctx) -> None:
    if request.headers.get("X-Test-Refuse") == "yes" and ctx.tenant is not None:
        raise PermissionDenied(f"Refused in {ctx.tenant.name}.")


@pytest.mark.django_db
def test_a_request_check_registered_by_another_app_runs_on_tenant_requests(tenant_a):
    """The extension point the security center's policy plugs into (``REQUEST_CHECKS``, a Registry)."""
    client = client_for(tenant_a.owner, tenant_a.tenant)
    url = reverse("audit-list")
    try:
        assert register_request_check(_refuse_marked) is _refuse_marked
        register_request_check(_refuse_marked)  # again: a no-op, it runs once
        assert list(REQUEST_CHECKS).count(_refuse_marked) == 1
        refused = client.get(url, HTTP_X_TEST_REFUSE="yes")
        assert refused.status_code == 403 and refused.json()["detail"] == "Refused in Tenant A."
        assert client.get(url).status_code == 200
    finally:
        REQUEST_CHECKS.unregister(f"{_refuse_marked.__module__}._refuse_marked")
    assert client.get(url, HTTP_X_TEST_REFUSE="yes").status_code == 200
