"""Isolation, generated over every portal page and portal API route: each role of a customer's portal
users gets its own objects (or 403 where the role may not: ``technical`` sees no money, only an
``owner`` manages users); another customer's object, in the same tenant or another, is a 404; the
session of one tenant's portal opens nothing in another tenant's portal.

The tables below classify every route; a route added without a row fails
``test_every_route_is_classified``."""

from __future__ import annotations

import uuid

import pytest
from django.urls import resolve, reverse

from apps.customers import services as customer_services
from apps.portal import services
from apps.portal import urls as portal_urls
from apps.portal.models import PortalRole, PortalSession
from apps.tenancy.scoping import tenant_scope
from tests.accounts.test_token_reach import _sample, api_routes

from .support import ROLES, api_client, page_client, saved_card

ALL = frozenset(ROLES)
MONEY = frozenset({PortalRole.OWNER, PortalRole.BILLING})
SERVICES = frozenset({PortalRole.OWNER, PortalRole.TECHNICAL})
OWNER = frozenset({PortalRole.OWNER})

# Pages for visitors: no login, no customer data (the email links carry their own signed proof).
PUBLIC_PAGES = {
    "index",
    "login",
    "logout",
    "invitation",
    "reset",
    "reset-confirm",
    "signup",
    "verify",
    "catalog",
    "invoice-link",
    "invoice-paid",
}

# name: (method, the object it addresses (an attribute of the customer's world, or "none" for a page
# without one, or "absent" for kinds the world has none of: only foreign ids are tried), roles allowed)
PAGES = {
    "dashboard": ("get", None, ALL),
    "invoices": ("get", None, MONEY),
    "invoice": ("get", "invoice", MONEY),
    "invoice-pdf": ("get", "invoice", MONEY),
    "invoice-pay": ("post", "invoice", MONEY),
    "services": ("get", None, ALL),
    "service": ("get", "subscription", ALL),
    "service-change": ("post", "subscription", MONEY),
    "service-cancel": ("post", "subscription", MONEY),
    "pod-action": ("post", "absent", SERVICES),
    "mailbox-password": ("post", "absent", SERVICES),
    "domain-auto-renew": ("post", "absent", SERVICES),
    "order-configure": ("get", "plan", MONEY),
    "cart": ("get", None, MONEY),
    "checkout": ("post", None, MONEY),
    "orders": ("get", None, MONEY),
    "order": ("get", "order", MONEY),
    "profile": ("get", None, ALL),
    "users": ("get", None, OWNER),
    "user-role": ("post", "other_user", OWNER),
    "user-remove": ("post", "other_user", OWNER),
    "security": ("get", None, ALL),
    "session-revoke": ("post", "session", ALL),
    "payment-methods": ("get", None, MONEY),
    "payment-method-add": ("post", None, MONEY),
    "payment-method-default": ("post", "card", MONEY),
    "payment-method-remove": ("post", "card", MONEY),
    # apps/portal/service_views.py (real pods and databases: tests/portal/test_portal_services*.py)
    "pod-row": ("get", "absent", SERVICES),
    "databases": ("get", None, SERVICES),
    "database-password": ("post", "absent", SERVICES),
    "contacts": ("get", None, ALL),
    "contact": ("get", "contact", OWNER),
    "contact-remove": ("post", "contact", OWNER),
    "service-cancel-confirm": ("get", "subscription", MONEY),
}

ALLOWED = {200, 302}


def test_every_route_is_classified():
    names = {p.name for p in portal_urls.urlpatterns}
    assert names == PUBLIC_PAGES | set(PAGES), names ^ (PUBLIC_PAGES | set(PAGES))


def _object(world, kind, role):
    if kind == "other_user":
        return world.users[PortalRole.BILLING if role != PortalRole.BILLING else PortalRole.TECHNICAL]
    if kind == "session":
        return PortalSession.all_tenants.filter(user__customer=world.customer).first()
    if kind == "card":
        return saved_card(world)  # a fresh one each time (removing it is one of the routes)
    if kind == "contact":
        with tenant_scope(world.tenant):
            return world.customer.contacts.first() or customer_services.contact_create(
                customer=world.customer, data={"name": "Ada", "email": f"ada.{world.customer.pk.hex[:6]}@cust.test"}
            )
    return getattr(world, kind)


def _path(slug, name, obj) -> str:
    pattern = next(p for p in portal_urls.urlpatterns if p.name == name)
    kwargs = {"tenant_slug": slug}
    keys = set(pattern.pattern.converters)
    if "pk" in keys:
        kwargs["pk"] = str(obj.pk) if obj is not None else str(uuid.uuid4())
    if "product_pk" in keys:
        kwargs["product_pk"] = str(obj.pk) if obj is not None else str(uuid.uuid4())
    if "action" in keys:
        kwargs["action"] = "suspend"
    return reverse(f"portal:{name}", kwargs=kwargs)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_pages_show_only_the_customers_own(name, portal):
    a1, a2, b1 = portal
    method, kind, allowed = PAGES[name]
    for role in ROLES:
        user = a1.users[role]
        client = page_client(user)
        # Another tenant's portal: this session opens nothing there.
        there = getattr(client, method)(_path(b1.tenant.slug, name, None))
        assert there.status_code in (302, 404), (name, role, there.status_code)
        if there.status_code == 302:
            assert there["Location"].startswith(f"/portal/{b1.tenant.slug}/login/"), there["Location"]
        if kind is not None:
            for other in (a2, b1):  # another customer of the same tenant, another tenant's customer
                foreign = _object(other, kind, role) if kind != "absent" else None
                if kind == "plan" and other is a2:
                    continue  # the same tenant's catalog is every customer's
                response = getattr(client, method)(_path(a1.tenant.slug, name, foreign))
                want = {404} if role in allowed else {403}
                assert response.status_code in want, (name, role, other.customer.name, response.status_code)
        if kind == "absent":
            continue
        own = _object(a1, kind, role) if kind is not None else None
        if kind == "session":
            own = PortalSession.all_tenants.filter(user=user, kind="web").first()
        if kind == "other_user":  # a user of its own customer to change or remove (not one the loop logs in)
            with tenant_scope(a1.tenant):
                own = services.portal_user_invite(customer=a1.customer, email=f"x.{role}@a1.test", role="technical")
        response = getattr(client, method)(_path(a1.tenant.slug, name, own))
        if role in allowed:
            assert response.status_code in ALLOWED, (name, role, response.status_code, response.content[:300])
        else:
            assert response.status_code == 403, (name, role, response.status_code)


# --- the portal API ---------------------------------------------------------------------------------

# url name of the route: (method, object kind or None, roles allowed, success codes)
API = {
    "portal-me": ("get", None, ALL, {200}),
    "portal-payment-method-list": ("get", None, MONEY, {200}),
    "portal-payment-method-setup": ("post", None, MONEY, {201, 409}),  # 409: no Stripe account here
    "portal-payment-method-detail": ("delete", "card", MONEY, {204}),
    "portal-payment-method-make-default": ("post", "card", MONEY, {200}),
    "portal-service-list": ("get", None, ALL, {200}),
    "portal-service-detail": ("get", "subscription", ALL, {200}),
    # An empty body cancels at period end (a pending service: now): the next role finds it cancelled (409).
    "portal-service-cancel": ("post", "subscription", MONEY, {200, 409}),
    "portal-service-change": ("post", "subscription", MONEY, {400}),  # no plan named: test_portal_cancel_change.py
    "portal-invoice-list": ("get", None, MONEY, {200}),
    "portal-invoice-detail": ("get", "invoice", MONEY, {200}),
    "portal-invoice-pay": ("post", "invoice", MONEY, {201, 409}),  # 409: Stripe is not configured here
    "portal-order-list": ("get", None, MONEY, {200}),
    "portal-order-detail": ("get", "order", MONEY, {200}),
    "portal-session-list": ("get", None, ALL, {200}),
    "portal-session-detail": ("delete", "session", ALL, {204}),
    # apps/portal/service_api.py ("absent": the world has none, only foreign ids are tried here; the
    # real pods, mailboxes, domains and databases are in tests/portal/test_portal_services*.py)
    "portal-pod-list": ("get", None, SERVICES, {200}),
    "portal-pod-detail": ("get", "absent", SERVICES, {200}),
    "portal-pod-restart": ("post", "absent", SERVICES, {202}),
    "portal-pod-suspend": ("post", "absent", SERVICES, {202}),
    "portal-pod-resume": ("post", "absent", SERVICES, {202}),
    "portal-mailbox-list": ("get", None, SERVICES, {200}),
    "portal-mailbox-detail": ("get", "absent", SERVICES, {200}),
    "portal-mailbox-password": ("post", "absent", SERVICES, {204}),
    "portal-domain-list": ("get", None, SERVICES, {200}),
    "portal-domain-detail": ("get", "absent", SERVICES, {200}),
    "portal-domain-auto-renew": ("post", "absent", SERVICES, {200}),
    "portal-database-list": ("get", None, SERVICES, {200}),
    "portal-database-detail": ("get", "absent", SERVICES, {200}),
    "portal-database-user-list": ("get", None, SERVICES, {200}),
    "portal-database-user-detail": ("get", "absent", SERVICES, {200}),
    "portal-database-user-password": ("post", "absent", SERVICES, {200}),
    "portal-contact-list": ("get", None, ALL, {200}),
    "portal-contact-detail": ("get", "contact", ALL, {200}),  # writes (owner only): test_portal_services.py
}
# Routes without a customer's object to isolate: tested by their own tests (login, logout, order create).
API_ELSEWHERE = {"portal-login", "portal-logout"}


def test_every_api_route_is_classified():
    names = {
        resolve("/api/v1/" + _sample(relative, {}).lstrip("/")).url_name
        for relative, _callback in api_routes()
        if relative.startswith("portal/")
    }
    assert names == set(API) | API_ELSEWHERE, names ^ (set(API) | API_ELSEWHERE)


def _api_path(name, obj):
    if name.endswith(
        (
            "-detail",
            "-pay",
            "-make-default",
            "-restart",
            "-suspend",
            "-resume",
            "-password",
            "-auto-renew",
            "-cancel",
            "-change",
        )
    ):
        return reverse(name, kwargs={"pk": str(obj.pk) if obj is not None else str(uuid.uuid4())})
    return reverse(name)


@pytest.mark.parametrize("name", sorted(API))
def test_api_answers_only_the_customers_own(name, portal):
    a1, a2, b1 = portal
    method, kind, allowed, success = API[name]
    for role in ROLES:
        user = a1.users[role]
        client = api_client(user)
        if kind is not None:
            for other in (a2, b1):
                foreign = _object(other, kind, role) if kind != "absent" else None
                response = getattr(client, method)(_api_path(name, foreign))
                want = {404} if role in allowed else {403}
                assert response.status_code in want, (name, role, other.customer.name, response.status_code)
        if kind == "absent":
            continue
        own = _object(a1, kind, role) if kind is not None else None
        if kind == "session":
            # a token of its own to end (ending the one in use would log the client out)
            own = (
                api_client(user) and PortalSession.all_tenants.filter(user=user, kind="api").order_by("-created_at")[0]
            )
        response = getattr(client, method)(_api_path(name, own))
        if role in allowed:
            assert response.status_code in success, (name, role, response.status_code, response.content[:300])
        else:
            assert response.status_code == 403, (name, role, response.status_code)
        if name == "portal-invoice-list" and role in allowed:
            ids = {row["id"] for row in response.json()["results"]}
            assert ids == {str(a1.invoice.pk), str(a1.order.invoice_id)}
        if name == "portal-service-list":
            assert {row["id"] for row in response.json()["results"]} == {str(a1.subscription.pk)}
