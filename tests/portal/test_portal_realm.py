"""The portal realm: staff invite portal users (API), the realms never mix, logins lock out, passwords
reset, sign-up verifies the address, TOTP, sessions end, and every portal action is audited with the
portal user as actor."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.customers.models import Customer
from apps.portal import services
from apps.portal.api import (
    PortalInvoiceViewSet,
    PortalOrderViewSet,
    PortalServiceViewSet,
    PortalSessionViewSet,
    PortalUserViewSet,
)
from apps.portal.models import PortalSession, PortalUser
from apps.tenancy.roles import Role
from apps.tenancy.scoping import tenant_scope
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for
from tests.security.test_security_tokens import bearer, token_for

from .support import PASSWORD, api_client, page_client

NEW_PASSWORD = "a-brand-new-pass-77"


def _link(message, pattern: str) -> str:
    found = re.search(r"https?://\S+" + pattern + r"\S*", message.body)
    assert found, message.body
    return urlsplit(found.group(0)).path


class TestPortalUserApi(ApiTestCase):
    """The staff's API over a customer's portal users; the portal API's viewsets are walked by the
    generated matrix of tests/portal/test_portal_isolation.py."""

    viewset = PortalUserViewSet
    basename = "customer-portal-user"
    covers = [PortalServiceViewSet, PortalInvoiceViewSet, PortalOrderViewSet, PortalSessionViewSet]
    roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    @pytest.fixture(autouse=True)
    def _parent(self, tenant_a):
        with tenant_a.scope():
            self.parent = Customer.objects.create(name="P", email="p@cust.test", currency="EUR")

    def url_kwargs(self, fx):
        return {"customer_pk": str(self.parent.pk)}

    def make(self, fx, seq):
        return PortalUser.objects.create(
            tenant=fx.tenant, customer=self.parent, email=f"u{seq}@cust.test", role="technical"
        )

    def create_payload(self, fx, seq):
        return {"email": f"new{seq}@cust.test", "role": "billing", "name": f"New {seq}"}

    def update_payload(self, fx, obj, seq):
        return {"name": f"Changed {seq}", "role": "billing"}


@pytest.mark.django_db
class TestInvitation:
    def test_staff_invite_then_the_user_sets_a_password_and_logs_in(self, tenant_a, django_capture_on_commit_callbacks):
        with tenant_a.scope():
            customer = Customer.objects.create(name="Jane", email="jane@cust.test", currency="EUR")
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        url = reverse("customer-portal-user-list", kwargs={"customer_pk": customer.pk})
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            response = admin.post(url, {"email": "Jane@Cust.test", "role": "owner"}, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["has_password"] is False
        assert admin.post(url, {"email": "jane@cust.test", "role": "owner"}, format="json").status_code == 400
        assert len(mail.outbox) == 1 and "jane@cust.test" in mail.outbox[0].to
        link = _link(mail.outbox[0], "/invitation/")
        browser = Client()
        assert browser.get(link).status_code == 200
        done = browser.post(link, {"password": NEW_PASSWORD, "password2": NEW_PASSWORD, "name": "Jane D"})
        assert done.status_code == 302 and done["Location"].endswith("/login/")
        assert browser.get(link).status_code == 400  # once
        login = browser.post(
            f"/portal/{tenant_a.tenant.slug}/login/", {"email": "jane@cust.test", "password": NEW_PASSWORD}
        )
        assert login.status_code == 302 and login["Location"].endswith("/dashboard/")
        assert browser.get(login["Location"]).status_code == 200
        # Audited in the tenant's trail, with the portal user as actor (via "portal").
        accept = AuditEvent.objects.get(action="portal_user.accept")
        assert accept.tenant_id == tenant_a.tenant.pk and accept.via == "portal"
        assert accept.actor_id is None and accept.actor_email == "jane@cust.test"
        owner_trail = client_for(tenant_a.owner, tenant_a.tenant).get("/api/v1/audit/?page_size=100").json()
        assert {"portal_user.invite", "portal_user.accept", "portal.login.web"} <= {
            e["action"] for e in owner_trail["results"]
        }


@pytest.mark.django_db
class TestRealms:
    def test_staff_credentials_never_open_the_portal_api(self, portal, tenant_a):
        owner = tenant_a.owner
        session = client_for(owner, tenant_a.tenant)
        assert session.get("/api/v1/portal/me").status_code == 403
        assert session.get("/api/v1/portal/invoices").status_code == 403
        _token, raw = token_for(owner, tenant_a, role=Role.OWNER)
        assert bearer(raw).get("/api/v1/portal/services").status_code == 403
        assert APIClient().get("/api/v1/portal/me").status_code == 401

    def test_portal_credentials_never_open_the_staff_api_or_admin(self, portal):
        a1 = portal[0]
        user = a1.users["owner"]
        api = api_client(user)
        assert api.get("/api/v1/portal/me").json()["email"] == user.email
        for path in ("/api/v1/customers/", "/api/v1/billing/invoices/", "/api/v1/auth/user/"):
            assert api.get(path, HTTP_X_TENANT_ID=str(a1.tenant.pk)).status_code == 401, path
        browser = page_client(user)
        assert browser.get("/api/v1/customers/", HTTP_X_TENANT_ID=str(a1.tenant.pk)).status_code in (401, 403)
        admin = browser.get("/admin/")
        assert admin.status_code == 302 and "/admin/login/" in admin["Location"]

    def test_a_session_of_one_tenant_opens_nothing_in_another(self, portal):
        a1, _a2, b1 = portal
        browser = page_client(a1.users["owner"])
        response = browser.get(f"/portal/{b1.tenant.slug}/dashboard/")
        assert response.status_code == 302 and response["Location"].startswith(f"/portal/{b1.tenant.slug}/login/")

    def test_an_ended_session_is_refused_at_once(self, portal):
        user = portal[0].users["billing"]
        browser = page_client(user)
        api = api_client(user)
        for session in PortalSession.all_tenants.filter(user=user):
            services.session_revoke(session=session, actor=user)
        assert browser.get(f"/portal/{user.tenant.slug}/dashboard/").status_code == 302
        assert api.get("/api/v1/portal/me").status_code == 401

    def test_logout_ends_the_token(self, portal):
        user = portal[0].users["technical"]
        api = api_client(user)
        assert api.post("/api/v1/portal/logout").status_code == 204
        assert api.get("/api/v1/portal/me").status_code == 401


@pytest.mark.django_db
class TestLogin:
    def test_wrong_passwords_lock_the_account_out(self, portal, settings):
        user = portal[0].users["owner"]
        slug = user.tenant.slug
        client = APIClient()
        for _ in range(settings.AXES_FAILURE_LIMIT):
            wrong = client.post("/api/v1/portal/login", {"tenant": slug, "email": user.email, "password": "nope-nope"})
            assert wrong.status_code == 400
        locked = client.post("/api/v1/portal/login", {"tenant": slug, "email": user.email, "password": PASSWORD})
        assert locked.status_code == 429
        page = Client().post(f"/portal/{slug}/login/", {"email": user.email, "password": PASSWORD})
        assert page.status_code == 429

    def test_unknown_address_and_wrong_password_answer_alike(self, portal):
        slug = portal[0].tenant.slug
        a = APIClient().post("/api/v1/portal/login", {"tenant": slug, "email": "nobody@x.test", "password": "x"})
        b = APIClient().post(
            "/api/v1/portal/login", {"tenant": slug, "email": portal[0].users["owner"].email, "password": "x"}
        )
        assert a.status_code == b.status_code == 400 and a.json() == b.json()

    def test_a_portal_user_of_tenant_a_cannot_log_in_to_tenant_b(self, portal):
        user = portal[0].users["owner"]
        other = portal[2].tenant.slug
        answer = APIClient().post("/api/v1/portal/login", {"tenant": other, "email": user.email, "password": PASSWORD})
        assert answer.status_code == 400

    def test_totp_is_asked_and_a_code_works_once(self, portal):
        user = portal[0].users["owner"]
        with tenant_scope(user.tenant):
            services.totp_begin(user=user)
            user.refresh_from_db()
            totp = TOTP(bytes.fromhex(user.totp_secret), step=30, digits=6)
            totp.time = time.time() - 30  # the previous step, so that the login's code is a new one
            services.totp_confirm(user=user, code=f"{totp.token():06d}")
        body = {"tenant": user.tenant.slug, "email": user.email, "password": PASSWORD}
        asked = APIClient().post("/api/v1/portal/login", body)
        assert asked.status_code == 400 and asked.json()["code"] == "mfa_required"
        code = f"{TOTP(bytes.fromhex(user.totp_secret), step=30, digits=6).token():06d}"
        assert APIClient().post("/api/v1/portal/login", {**body, "code": code}).status_code == 200
        assert APIClient().post("/api/v1/portal/login", {**body, "code": code}).status_code == 400  # replay

    def test_password_reset(self, portal, django_capture_on_commit_callbacks):
        user = portal[0].users["billing"]
        slug = user.tenant.slug
        browser = Client()
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            assert browser.post(f"/portal/{slug}/reset/", {"email": user.email}).status_code == 302
            assert browser.post(f"/portal/{slug}/reset/", {"email": "nobody@x.test"}).status_code == 302
        assert len(mail.outbox) == 1
        link = _link(mail.outbox[0], "/reset/")
        assert browser.post(link, {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}).status_code == 302
        assert browser.get(link).status_code == 400  # used
        ok = browser.post(f"/portal/{slug}/login/", {"email": user.email, "password": NEW_PASSWORD})
        assert ok.status_code == 302


@pytest.mark.django_db
class TestSignUp:
    def test_closed_by_default_then_open_with_email_verification(self, tenant_a, django_capture_on_commit_callbacks):
        slug = tenant_a.tenant.slug
        form = {
            "name": "Vis Itor",
            "email": "visitor@x.test",
            "password": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            "company": "",
            "country": "NL",
        }
        assert Client().get(f"/portal/{slug}/signup/").status_code == 404
        services.settings_update(tenant=tenant_a.tenant, allow_signup=True)
        browser = Client()
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            assert browser.post(f"/portal/{slug}/signup/", form).status_code == 200
        with tenant_a.scope():
            customer = Customer.objects.get(email="visitor@x.test")
            assert str(customer.country) == "NL"
        # Not verified yet: no login.
        refused = browser.post(f"/portal/{slug}/login/", {"email": "visitor@x.test", "password": NEW_PASSWORD})
        assert refused.status_code == 200 and b"Confirm your address" in refused.content
        link = _link(mail.outbox[0], "/verify/")
        assert browser.get(link).status_code == 302
        ok = browser.post(f"/portal/{slug}/login/", {"email": "visitor@x.test", "password": NEW_PASSWORD})
        assert ok.status_code == 302
        assert AuditEvent.objects.filter(
            action="portal_user.signup", via="portal", actor_email="visitor@x.test"
        ).exists()


@pytest.mark.django_db
def test_an_operator_invites_a_portal_user_in_the_admin(tenant_a, django_capture_on_commit_callbacks):
    from tests.conftest import admin_login, make_user

    operator = make_user("op@mpanel.test", is_staff=True, is_superuser=True)
    browser = admin_login(Client(), operator)
    with tenant_a.scope():
        customer = Customer.objects.create(name="Adm", email="adm@cust.test", currency="EUR")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        added = browser.post(
            "/admin/portal/portaluser/add/",
            {"customer": str(customer.pk), "email": "new@cust.test", "name": "New", "role": "owner", "is_active": "on"},
        )
    assert added.status_code == 302, added.content[:2000]
    user = PortalUser.all_tenants.get(email="new@cust.test")
    assert len(mail.outbox) == 1 and "/invitation/" in mail.outbox[0].body
    assert AuditEvent.objects.filter(action="portal_user.invite", actor=operator, tenant_id=tenant_a.tenant.pk).exists()
    assert browser.get(f"/admin/portal/portaluser/{user.pk}/change/").status_code == 200
    assert browser.get("/admin/portal/portaluser/").status_code == 200
