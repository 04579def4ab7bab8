"""Websites through the API, panel side only: jobs are stored but not dispatched here
(tests/hosting/test_websites_nginx.py runs them against a real nginx)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.nodes.models import NodeStatus
from apps.tenancy.roles import ORDERED, Role
from apps.websites.api import WebsiteViewSet
from apps.websites.models import Website, WebsiteDomain, WebsiteStatus
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for
from tests.web_support import web_node_in, website_in


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


class TestWebsiteApi(ApiTestCase):
    viewset = WebsiteViewSet
    basename = "website"
    roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }
    success = {"destroy": 202}

    def make(self, fx, seq):
        return website_in(fx, seq)

    def create_payload(self, fx, seq):
        web_node_in(fx)
        return {"primary_domain": f"new{seq}-{fx.tenant.pk.hex[:8]}.example.com"}

    def update_payload(self, fx, obj, seq):
        return {"aliases": [f"alias{seq}-{fx.tenant.pk.hex[:8]}.example.com"], "php_version": "8.2"}


def url(site=None, action=None) -> str:
    if site is None:
        return reverse("website-list")
    if action:
        return reverse(f"website-{action}", kwargs={"pk": site.pk})
    return reverse("website-detail", kwargs={"pk": site.pk})


def fresh(site) -> Website:
    return Website.all_tenants.get(pk=site.pk)


@pytest.mark.django_db
class TestCreate:
    def test_create_stores_the_site_its_hostnames_and_a_provision_job(self, tenant_a):
        node = web_node_in(tenant_a)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        response = client.post(
            url(),
            {"primary_domain": " Shop.EXAMPLE.com. ", "aliases": ["www.shop.example.com", "ÄÖÜ.example.com"],
             "php_version": "8.3", "www_redirect": "www", "error_pages": {"404": "/errors/404.html"},
             "redirects": [{"source": "/old", "target": "https://Bücher.example/new?x=1", "code": 302}]},
            format="json",
        )  # fmt: skip
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["status"] == "pending" and body["node"] == str(node.pk)
        assert body["primary_domain"] == "shop.example.com"
        assert body["aliases"] == ["www.shop.example.com", "xn--4ca0bs.example.com"]
        assert body["redirects"] == [{"source": "/old", "target": "https://xn--bcher-kva.example/new?x=1", "code": 302}]
        site = Website.all_tenants.get(pk=body["id"])
        assert sorted(WebsiteDomain.all_tenants.filter(website=site).values_list("name", flat=True)) == sorted(
            site.domains
        )
        assert list(Job.all_tenants.filter(object_id=str(site.pk)).values_list("type", flat=True)) == [
            "website.provision"
        ]

    @pytest.mark.parametrize(
        "payload",
        [
            {"primary_domain": ""},
            {"primary_domain": "localhost"},
            {"primary_domain": "exa mple.com"},
            {"primary_domain": "-bad.example.com"},
            {"primary_domain": "a" * 64 + ".example.com"},
            {"primary_domain": "example.123"},
            {"primary_domain": "*.example.com"},
            {"primary_domain": "foo.*.example.com"},
            {"primary_domain": "ex\x00ample.com"},
            {"primary_domain": "example.com;evil"},
            {"primary_domain": "ok.example.com", "aliases": ["ok.example.com"]},
            {"primary_domain": "ok.example.com", "aliases": ["bad_name.example.com"]},
            {"primary_domain": "ok.example.com", "document_root": "../etc"},
            {"primary_domain": "ok.example.com", "document_root": "/abs"},
            {"primary_domain": "ok.example.com", "php_version": "4.0"},
            {"primary_domain": "ok.example.com", "system_user": "Root;"},
            {"primary_domain": "ok.example.com", "error_pages": {"200": "/ok.html"}},
            {"primary_domain": "ok.example.com", "error_pages": {"404": "/../x.html"}},
            {"primary_domain": "ok.example.com", "error_pages": {"404": "/x.html; return 200"}},
            {"primary_domain": "ok.example.com", "redirects": [{"source": "/a", "target": "javascript:alert(1)"}]},
            {"primary_domain": "ok.example.com", "redirects": [{"source": "/a", "target": "https://*.example.com/"}]},
            {"primary_domain": "ok.example.com", "redirects": [{"source": "/a", "target": "https://x.example/a b"}]},
            {"primary_domain": "ok.example.com", "redirects": [{"source": "/a", "target": "https://x.example/;}"}]},
            {"primary_domain": "ok.example.com", "redirects": [{"source": "a", "target": "https://x.example/"}]},
            {"primary_domain": "ok.example.com", "https": False, "redirect_https": True},
        ],
    )
    def test_bad_input_is_400_and_nothing_is_stored(self, tenant_a, payload):
        web_node_in(tenant_a)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        response = client.post(url(), payload, format="json")
        assert response.status_code == 400, (payload, response.status_code, response.content)
        assert not Website.all_tenants.exists() and not Job.all_tenants.filter(type__startswith="website").exists()

    def test_wildcards_only_when_allowed(self, tenant_a, settings):
        web_node_in(tenant_a)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        assert client.post(url(), {"primary_domain": "*.wild.example"}, format="json").status_code == 400
        settings.WEBSITES_ALLOW_WILDCARDS = True
        response = client.post(url(), {"primary_domain": "*.Wild.example"}, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["primary_domain"] == "*.wild.example"

    def test_hostnames_are_unique_across_the_platform(self, tenant_a, tenant_b):
        web_node_in(tenant_a)
        web_node_in(tenant_b)
        a = client_for(tenant_a.owner, tenant_a.tenant)
        b = client_for(tenant_b.owner, tenant_b.tenant)
        assert a.post(url(), {"primary_domain": "taken.example", "aliases": ["www.taken.example"]},
                      format="json").status_code == 201  # fmt: skip
        for payload in (
            {"primary_domain": "TAKEN.example"},
            {"primary_domain": "free.example", "aliases": ["www.taken.example"]},
        ):
            # Another site of the same tenant: domain_taken; another tenant's name: name_taken, not
            # saying what holds it (apps/names/claims.py).
            for client, code in ((a, "domain_taken"), (b, "name_taken")):
                response = client.post(url(), payload, format="json")
                assert response.status_code == 409, response.content
                assert response.json()["code"] == code
        assert Website.all_tenants.count() == 1
        # Another site may not take it by an update either.
        other = b.post(url(), {"primary_domain": "other.example"}, format="json").json()
        response = b.patch(reverse("website-detail", kwargs={"pk": other["id"]}), {"aliases": ["taken.example"]},
                           format="json")  # fmt: skip
        assert response.status_code == 409

    def test_no_web_node_is_409_and_a_node_without_the_role_is_400(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        assert client.post(url(), {"primary_domain": "a.example"}, format="json").status_code == 409
        pods_only = web_node_in(tenant_a, hostname="pods-1", roles=["pods"])
        response = client.post(url(), {"primary_domain": "a.example", "node": str(pods_only.pk)}, format="json")
        assert response.status_code == 400 and "node" in response.json()

    def test_another_tenants_node_or_customer_is_400(self, tenant_a, tenant_b):
        web_node_in(tenant_a)
        theirs = web_node_in(tenant_b, hostname="theirs")
        client = client_for(tenant_a.owner, tenant_a.tenant)
        response = client.post(url(), {"primary_domain": "a.example", "node": str(theirs.pk)}, format="json")
        assert response.status_code == 400 and "node" in response.json()

    def test_placement_spreads_over_active_web_nodes(self, tenant_a):
        first = web_node_in(tenant_a, hostname="web-a")
        second = web_node_in(tenant_a, hostname="web-b")
        web_node_in(tenant_a, hostname="web-c", status=NodeStatus.DRAINING)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        nodes = [
            client.post(url(), {"primary_domain": f"s{i}.example"}, format="json").json()["node"] for i in range(4)
        ]
        assert sorted(nodes) == sorted([str(first.pk), str(first.pk), str(second.pk), str(second.pk)])


@pytest.mark.django_db
class TestStateChanges:
    def test_suspend_resume_delete_and_illegal_changes(self, tenant_a):
        site = website_in(tenant_a, 1)
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        assert client.post(url(site, "resume")).status_code == 409
        assert client.post(url(site, "suspend")).status_code == 202
        assert fresh(site).status == WebsiteStatus.SUSPENDED
        assert client.post(url(site, "suspend")).status_code == 409
        assert client.post(url(site, "resume")).status_code == 202
        assert client.delete(url(site)).status_code == 202
        assert fresh(site).status == WebsiteStatus.DELETING
        assert not WebsiteDomain.all_tenants.filter(website=site).exists()  # the names are free at once
        assert client.delete(url(site)).status_code == 409
        assert client.post(url(site, "suspend")).status_code == 409
        assert client.patch(url(site), {"php_version": "8.1"}, format="json").status_code == 409
        types = list(
            Job.all_tenants.filter(object_id=str(site.pk)).order_by("created_at").values_list("type", flat=True)
        )
        assert types == ["website.provision", "website.suspend", "website.resume", "website.delete"]

    def test_suspend_and_resume_need_admin_and_are_404_elsewhere(self, tenant_a, tenant_b):
        for role in ORDERED:
            site = website_in(tenant_a, f"r{role.value.lower()}")
            response = client_for(tenant_a.users[role], tenant_a.tenant).post(url(site, "suspend"))
            assert response.status_code == (202 if role.includes(Role.ADMIN) else 403), role
            other = client_for(tenant_b.users[role], tenant_b.tenant).post(url(site, "resume"))
            assert other.status_code == 404

    def test_an_unchanged_update_stores_no_job(self, tenant_a):
        site = website_in(tenant_a, 2)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        assert client.patch(url(site), {"php_version": ""}, format="json").status_code == 200
        assert Job.all_tenants.filter(object_id=str(site.pk), type="website.update").count() == 0

    def test_filters(self, tenant_a):
        one = website_in(tenant_a, 3)
        website_in(tenant_a, 4)
        client = client_for(tenant_a.owner, tenant_a.tenant)
        response = client.get(url(), {"domain": one.primary_domain.upper()})
        assert [r["id"] for r in response.json()["results"]] == [str(one.pk)]
