"""Custom portal domains: added by a tenant, proved by a TXT record looked up with dnspython at a
real PowerDNS server, mapped to that tenant by the middleware (verified names only), with a
self-signed certificate shown as such."""

from __future__ import annotations

import socket

import pytest
from cryptography import x509
from django.core.cache import cache
from django.test import RequestFactory
from django.urls import reverse

from apps.tenancy.roles import Role
from apps.whitelabel import crypto, services
from apps.whitelabel.api import CustomDomainViewSet
from apps.whitelabel.middleware import PortalDomainMiddleware
from apps.whitelabel.models import CustomDomain, DomainStatus
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401
from tests.hosting.test_dns import dns_node, records_url, zones_url


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _quick_dns_and_clean_cache(settings):
    # Lookups outside the PowerDNS test go to a closed port: an answerless resolver, at once.
    settings.MPANEL_DNS_RESOLVERS = [f"127.0.0.1:{_closed_port()}"]
    settings.MPANEL_DNS_RESOLVER_TIMEOUT = 1
    cache.clear()
    yield
    cache.clear()


def domain_in(fx, hostname: str) -> CustomDomain:
    with fx.scope():
        return services.domain_add(tenant=fx.tenant, hostname=hostname, actor=fx.owner)


def url(domain=None, action=None) -> str:
    if domain is None:
        return reverse("whitelabel-domain-list")
    if action:
        return reverse(f"whitelabel-domain-{action}", kwargs={"pk": domain.pk})
    return reverse("whitelabel-domain-detail", kwargs={"pk": domain.pk})


class TestCustomDomainApi(ApiTestCase):
    viewset = CustomDomainViewSet
    basename = "whitelabel-domain"
    roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER, "create": Role.ADMIN, "destroy": Role.ADMIN}

    def make(self, fx, seq):
        return services.domain_add(tenant=fx.tenant, hostname=f"p{seq}.brand.example")

    def create_payload(self, fx, seq):
        return {"hostname": f"New{seq}.Brand.example."}


@pytest.mark.django_db
class TestCustomDomains:
    def test_add_normalises_and_refuses_bad_names(self, tenant_a):
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        created = admin.post(url(), {"hostname": " My.Bränd.example. "}, format="json")
        assert created.status_code == 201, created.content
        body = created.json()
        assert body["hostname"] == "my.xn--brnd-moa.example" and body["status"] == "pending"
        assert body["verification"]["type"] == "TXT"
        assert body["verification"]["name"] == "_mpanel-verify.my.xn--brnd-moa.example."
        assert body["verification"]["content"].startswith("mpanel-verify=") and body["certificate"] is None
        assert admin.post(url(), {"hostname": "my.xn--brnd-moa.example"}, format="json").status_code == 409
        for bad in ("localhost", "*.brand.example", "a..b.example", "x" * 300, "_srv.brand.example", "1.2.3.4", ""):
            assert admin.post(url(), {"hostname": bad}, format="json").status_code == 400, bad
        assert CustomDomain.all_tenants.filter(tenant=tenant_a.tenant).count() == 1

    def test_unverified_stays_pending_and_says_why(self, tenant_a):
        domain = domain_in(tenant_a, "portal.brand.example")
        admin = client_for(tenant_a.owner, tenant_a.tenant)
        response = admin.post(url(domain, "verify"))
        assert response.status_code == 409 and response.json()["code"] == "verification_failed"
        domain.refresh_from_db()
        assert domain.status == DomainStatus.PENDING and "No TXT record" in domain.last_error
        assert domain.last_checked_at is not None

    def test_foreign_tenant_gets_404(self, tenant_a, tenant_b):
        domain = domain_in(tenant_a, "portal.brand.example")
        for role in Role:
            other = client_for(tenant_b.users[role], tenant_b.tenant)
            assert other.get(url(domain)).status_code == 404
            assert other.post(url(domain, "verify")).status_code == 404
            assert other.delete(url(domain)).status_code == 404
        assert CustomDomain.all_tenants.filter(pk=domain.pk).exists()

    def test_verified_through_powerdns_then_mapped_by_the_middleware(
        self,
        tenant_a,
        tenant_b,
        pdns_node_env,  # noqa: F811
        settings,
        django_capture_on_commit_callbacks,
    ):
        settings.MPANEL_DNS_RESOLVERS = [f"127.0.0.1:{pdns_node_env.dns_port}"]
        settings.MPANEL_DNS_RESOLVER_TIMEOUT = 3
        domain = domain_in(tenant_a, "my.nimbus-brand.example")
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        middleware = PortalDomainMiddleware(lambda request: request)
        factory = RequestFactory()

        # Pending: the host maps to nobody, and answers 404 (a name a tenant claimed is never the panel).
        assert middleware(factory.get("/", HTTP_HOST="my.nimbus-brand.example")).status_code == 404
        assert client_for().get("/api/v1/healthz", HTTP_HOST="my.nimbus-brand.example").status_code == 404

        # The tenant publishes the record in its zone, served by the real PowerDNS.
        dns_node(tenant_a)
        with django_capture_on_commit_callbacks(execute=True):
            zone = admin.post(zones_url(), {"name": "nimbus-brand.example"}, format="json").json()
        zone_ref = type("Z", (), {"pk": zone["id"]})
        with django_capture_on_commit_callbacks(execute=True):
            wrong = {"name": "_mpanel-verify.my", "type": "TXT", "content": "mpanel-verify=wrong"}
            assert admin.post(records_url(zone_ref), wrong, format="json").status_code == 201
        assert pdns_node_env.ask("_mpanel-verify.my.nimbus-brand.example.", "TXT") == ['"mpanel-verify=wrong"']
        refused = admin.post(url(domain, "verify"))
        assert refused.status_code == 409 and "do not hold" in refused.json()["detail"]

        with django_capture_on_commit_callbacks(execute=True):
            right = {"name": "_mpanel-verify.my", "type": "TXT", "content": domain.record_value}
            assert admin.post(records_url(zone_ref), right, format="json").status_code == 201
        with django_capture_on_commit_callbacks(execute=True):
            response = admin.post(url(domain, "verify"))
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["status"] == "verified" and body["verified_at"] and body["last_error"] == ""
        # Self-signed until the SSL module lands, and the API says so.
        assert body["certificate"]["kind"] == "self-signed" and body["certificate"]["trusted"] is False
        domain.refresh_from_db()
        cert = x509.load_pem_x509_certificate(domain.certificate_pem.encode())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
        assert names == ["my.nimbus-brand.example"] and cert.issuer == cert.subject
        assert "PRIVATE KEY" in crypto.decrypt(domain.certificate_key_encrypted)
        assert "PRIVATE KEY" not in domain.certificate_key_encrypted

        # Verified: the host maps to tenant A (any case, a port, a trailing dot), and Django serves it.
        for host in ("my.nimbus-brand.example", "MY.Nimbus-Brand.example.:443"):
            request = middleware(factory.get("/", HTTP_HOST=host))
            assert request.portal_tenant == tenant_a.tenant and request.portal_domain == "my.nimbus-brand.example"
            assert request.get_host() == host
        # There it is the tenant's portal alone (apps/portal/host_urls.py): no staff API.
        assert client_for().get("/login/", HTTP_HOST="my.nimbus-brand.example").status_code == 200
        assert client_for().get("/api/v1/healthz", HTTP_HOST="my.nimbus-brand.example").status_code == 404
        # Unknown hosts and the panel's own get nothing.
        for host in ("other.nimbus-brand.example", "testserver", "127.0.0.1:8000", "[::1]"):
            assert middleware(factory.get("/", HTTP_HOST=host)).portal_tenant is None, host

        # Tenant B cannot take the name, even with the record: it is in use.
        taken = client_for(tenant_b.owner, tenant_b.tenant).post(
            url(), {"hostname": "my.nimbus-brand.example"}, format="json"
        )
        assert taken.status_code == 409

        # Removing it unmaps the host once the change commits.
        with django_capture_on_commit_callbacks(execute=True):
            assert admin.delete(url(domain)).status_code == 204
        assert middleware(factory.get("/", HTTP_HOST="my.nimbus-brand.example")).portal_tenant is None
        assert client_for().get("/login/", HTTP_HOST="my.nimbus-brand.example").status_code == 400

    def test_a_record_in_another_tenants_zone_proves_nothing(
        self,
        tenant_a,
        tenant_b,
        pdns_node_env,  # noqa: F811
        settings,
        django_capture_on_commit_callbacks,
    ):
        """Tenant B serves a zone on our PowerDNS; tenant A claims a name in it. Even with the right
        token published there (B would have to do it, or a shared server answers it), the answer comes
        from another tenant's zone and is not taken."""
        settings.MPANEL_DNS_RESOLVERS = [f"127.0.0.1:{pdns_node_env.dns_port}"]
        settings.MPANEL_DNS_RESOLVER_TIMEOUT = 3
        claim = domain_in(tenant_a, "shop.bees-zone.example")
        owner_b = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
        dns_node(tenant_b)
        with django_capture_on_commit_callbacks(execute=True):
            zone = owner_b.post(zones_url(), {"name": "bees-zone.example"}, format="json").json()
        with django_capture_on_commit_callbacks(execute=True):
            record = {"name": "_mpanel-verify.shop", "type": "TXT", "content": claim.record_value}
            assert (
                owner_b.post(records_url(type("Z", (), {"pk": zone["id"]})), record, format="json").status_code == 201
            )
        assert pdns_node_env.ask("_mpanel-verify.shop.bees-zone.example.", "TXT") == [f'"{claim.record_value}"']
        response = client_for(tenant_a.owner, tenant_a.tenant).post(url(claim, "verify"))
        assert response.status_code == 409
        assert CustomDomain.all_tenants.get(pk=claim.pk).status == DomainStatus.PENDING


@pytest.mark.django_db
def test_templates_get_the_brand_of_the_portal_tenant_only(tenant_a):
    from django.template import engines

    from apps.whitelabel.context import brand

    factory = RequestFactory()
    plain = factory.get("/")
    assert brand(plain) == {}
    portal = factory.get("/")
    portal.portal_tenant = tenant_a.tenant
    assert brand(portal)["brand"].display_name == tenant_a.tenant.name
    template = engines["django"].from_string("{{ brand.display_name }}|{{ brand.primary_color }}")
    assert template.render({}, portal) == f"{tenant_a.tenant.name}|#1f4fd1"
    assert template.render({}, plain) == "|"


@pytest.fixture
def console(client, db):
    from django.contrib.auth import get_user_model

    from tests.conftest import PASSWORD, admin_login

    return admin_login(client, get_user_model().objects.create_superuser("operator@mpanel.test", PASSWORD))


def test_operators_check_a_domain_and_ask_for_its_certificate_from_the_admin(console, tenant_a):
    """The admin's actions call the same services as the API: a TXT record not published yet keeps
    the domain pending and says so; asking for the certificate of an unverified domain says why not."""
    domain = domain_in(tenant_a, "portal.brand-admin.example")
    changelist = reverse("admin:whitelabel_customdomain_changelist")
    checked = console.post(changelist, {"action": "verify_now", "_selected_action": [str(domain.pk)]}, follow=True)
    assert checked.status_code == 200
    page = checked.content.decode()
    assert "No TXT record" in page and "_mpanel-verify.portal.brand-admin.example" in page
    assert "Verified 1" not in page
    assert CustomDomain.all_tenants.get(pk=domain.pk).status == DomainStatus.PENDING
    assert CustomDomain.all_tenants.get(pk=domain.pk).last_checked_at is not None
    asked = console.post(changelist, {"action": "retry_certificate", "_selected_action": [str(domain.pk)]},
                         follow=True)  # fmt: skip
    assert "Verify the domain first." in asked.content.decode()
