"""A tenant's verified custom domain is its portal and nothing else: pages at their own paths (no
``/portal/<slug>/``), the portal API, the brand's logo; ``/admin/``, the staff API, ``/accounts/`` and
other tenants' portals are 404 there; no page, e-mail or link shows the platform's name or address."""

from __future__ import annotations

import re
import uuid

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.billing.services import notifications
from apps.portal import services
from apps.portal import urls as portal_urls
from apps.portal.models import PortalRole, PortalSession
from apps.tenancy.scoping import tenant_scope
from apps.whitelabel import services as brand_services
from apps.whitelabel.models import CustomDomain, DomainStatus
from apps.whitelabel.selectors import portal_url

from .support import PASSWORD, api_client

HOST_A = "my.nimbus-brand.example"
HOST_B = "care.bees-brand.example"
PENDING = "soon.nimbus-brand.example"
PLATFORM = re.compile(r"mpanel", re.IGNORECASE)


def _domain(tenant, hostname, status=DomainStatus.VERIFIED) -> CustomDomain:
    with tenant_scope(tenant):
        when = timezone.now() if status == DomainStatus.VERIFIED else None
        return CustomDomain.all_tenants.create(tenant=tenant, hostname=hostname, status=status, verified_at=when)


@pytest.fixture
def hosts(portal):
    a1, _a2, b1 = portal
    with tenant_scope(a1.tenant):
        brand_services.brand_update(
            tenant=a1.tenant,
            data={"display_name": "Nimbus Hosting", "support_email": "help@nimbus-brand.example",
                  "legal_name": "Nimbus Hosting Ltd", "vat_id": "IE1234567T"},
        )  # fmt: skip
    _domain(a1.tenant, HOST_A)
    _domain(a1.tenant, PENDING, DomainStatus.PENDING)
    _domain(b1.tenant, HOST_B)
    return portal


def host_client(host: str, user=None) -> Client:
    client = Client(HTTP_HOST=host)
    if user is not None:
        response = client.post("/login/", {"email": user.email, "password": PASSWORD})
        assert response.status_code == 302 and response["Location"] == "/dashboard/", response
    return client


def _page_path(name: str, obj_pk=None) -> str:
    pattern = next(p for p in portal_urls.urlpatterns if p.name == name)
    kwargs = {"tenant_slug": "ignored"}
    for key in pattern.pattern.converters:
        if key in ("pk", "product_pk"):
            kwargs[key] = str(obj_pk or uuid.uuid4())
        elif key == "action":
            kwargs[key] = "suspend"
        elif key == "token":
            kwargs[key] = "not-a-token"
    return reverse(f"portal:{name}", kwargs=kwargs, urlconf="apps.portal.host_urls")


def _clean(response) -> str:
    body = response.content.decode()
    assert not PLATFORM.search(body), (response.request["PATH_INFO"], PLATFORM.search(body))
    return body


@pytest.mark.django_db
def test_the_portal_is_at_the_root_of_the_custom_domain(hosts):
    a1, _a2, _b1 = hosts
    visitor = host_client(HOST_A)
    login = visitor.get("/login/")
    assert login.status_code == 200 and "Log in to Nimbus Hosting" in _clean(login)
    assert visitor.get("/")["Location"] == "/login/"
    owner = host_client(HOST_A, a1.users[PortalRole.OWNER])
    dashboard = owner.get("/dashboard/")
    body = _clean(dashboard)
    # Links are the host's own paths, never the panel's /portal/<slug>/.
    assert 'href="/invoices/"' in body and f"/portal/{a1.tenant.slug}/" not in body
    invoice = owner.get(f"/invoices/{a1.invoice.pk}/")
    assert invoice.status_code == 200 and a1.invoice.number in _clean(invoice)
    pdf = owner.get(f"/invoices/{a1.invoice.pk}/pdf/")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"


@pytest.mark.django_db
def test_every_portal_page_on_the_custom_domain_is_branded_and_clean(hosts):
    """Walks every page of the portal (GET) as each role and as a visitor: nothing says the platform."""
    a1, _a2, _b1 = hosts
    objects = {"invoice": a1.invoice.pk, "invoice-pdf": a1.invoice.pk, "service": a1.subscription.pk,
               "order-configure": a1.plan.pk, "order": a1.order.pk, "invoice-paid": a1.invoice.pk}  # fmt: skip
    names = [p.name for p in portal_urls.urlpatterns]
    seen = 0
    for client in [host_client(HOST_A)] + [host_client(HOST_A, a1.users[role]) for role in PortalRole]:
        for name in names:
            response = client.get(_page_path(name, objects.get(name)))
            assert response.status_code in (200, 302, 400, 403, 404, 405), (name, response.status_code)
            if response.status_code == 302:
                assert not response["Location"].startswith(("http", "/portal/")), (name, response["Location"])
            if response.get("Content-Type", "").startswith("text/html"):
                _clean(response)
                seen += 1
    assert seen > len(names)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["/admin/", "/admin/login/", "/api/v1/", "/api/v1/healthz", "/api/v1/customers/", "/api/v1/schema/",
     "/api/v1/enterprise/white-label", "/accounts/login/", "/security/2fa/", "/nowhere/"],
)  # fmt: skip
def test_staff_and_platform_pages_are_404_on_the_custom_domain(hosts, path):
    response = host_client(HOST_A).get(path)
    assert response.status_code == 404, (path, response.status_code)
    _clean(response)


@pytest.mark.django_db
def test_another_tenants_portal_is_never_served_on_a_custom_domain(hosts):
    a1, _a2, b1 = hosts
    visitor = host_client(HOST_A)
    for path in (f"/portal/{b1.tenant.slug}/login/", f"/portal/{a1.tenant.slug}/login/", f"/{b1.tenant.slug}/login/"):
        assert visitor.get(path).status_code == 404, path
    # B's own domain is B's portal, not A's.
    page = host_client(HOST_B).get("/login/").content.decode()
    assert f"Log in to {b1.tenant.name}" in page and "Nimbus" not in page
    # A's customer cannot log in on B's domain (B has no such user), nor see A's invoice there.
    refused = host_client(HOST_B).post("/login/", {"email": a1.users[PortalRole.OWNER].email, "password": PASSWORD})
    assert refused.status_code == 200 and "Location" not in refused
    # A pending name and an unknown one: 404 / refused, never a portal and never the panel.
    assert host_client(PENDING).get("/login/").status_code == 404
    assert host_client(PENDING).get("/admin/").status_code == 404
    assert host_client("unknown.nimbus-brand.example").get("/login/").status_code == 400  # ALLOWED_HOSTS


@pytest.mark.django_db
def test_portal_api_on_the_custom_domain_is_its_tenants_only(hosts):
    a1, _a2, b1 = hosts
    token_a = api_client(a1.users[PortalRole.OWNER])
    token_a.defaults["HTTP_HOST"] = HOST_A
    assert token_a.get("/api/v1/portal/me").status_code == 200
    assert token_a.get("/api/v1/portal/invoices/").status_code == 200
    token_b = api_client(b1.users[PortalRole.OWNER])
    token_b.defaults["HTTP_HOST"] = HOST_A
    assert token_b.get("/api/v1/portal/me").status_code == 401
    login = APIClient(HTTP_HOST=HOST_A)
    wrong = {"tenant": b1.tenant.slug, "email": b1.users[PortalRole.OWNER].email, "password": PASSWORD}
    assert login.post("/api/v1/portal/login", wrong, format="json").status_code == 400
    right = {"tenant": a1.tenant.slug, "email": a1.users[PortalRole.OWNER].email, "password": PASSWORD}
    assert login.post("/api/v1/portal/login", right, format="json").status_code == 200
    # The staff API is not there, with any credential.
    assert token_a.get("/api/v1/customers/").status_code == 404
    assert PortalSession.all_tenants.filter(user=a1.users[PortalRole.OWNER], kind="api").count() == 2


@pytest.mark.django_db
def test_links_in_emails_use_the_custom_domain(hosts, settings, django_capture_on_commit_callbacks):
    a1, _a2, b1 = hosts
    settings.MPANEL_JOBS_EAGER = True
    assert portal_url(a1.tenant, "login") == f"http://{HOST_A}/login/"
    assert portal_url(b1.tenant, "login") == f"http://{HOST_B}/login/"
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        host_client(HOST_A).post("/reset/", {"email": a1.users[PortalRole.OWNER].email})
    (reset,) = mail.outbox
    assert f"http://{HOST_A}/reset/" in reset.body and "Nimbus Hosting" in reset.from_email
    for part in (reset.subject, reset.body, reset.from_email, reset.alternatives[0][0]):
        assert not PLATFORM.search(part), part
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        notifications.notify_invoice(a1.invoice, "issued")
    (issued,) = mail.outbox
    assert f"http://{HOST_A}/i/" in issued.body
    for part in (issued.subject, issued.body, issued.from_email, issued.alternatives[0][0]):
        assert not PLATFORM.search(part), part
    with tenant_scope(a1.tenant):
        services.portal_user_send_invitation(a1.users[PortalRole.BILLING])
