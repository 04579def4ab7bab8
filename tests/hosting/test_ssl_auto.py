"""Hosting plans with SSL (``"ssl": true``): every new website of the customer's account gets an ACME
certificate without anyone asking, issued by pebble through our nginx (HTTP-01) and served."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from apps.dns import services as dns_services
from apps.ssl.models import Certificate, CertificateStatus
from apps.tenancy.roles import Role
from apps.tenancy.scoping import all_tenants
from apps.websites import services as website_services
from tests.conftest import client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401  (fixtures)
from tests.hosting.test_ssl_acme import node_in
from tests.hosting_support import PLAN, account_of, order_paid, plan_in
from tests.ssl_support import pebble, wait_served  # noqa: F401  (fixtures)
from tests.web_support import nginx_node, web_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def certificate_of(site_pk) -> Certificate:
    with all_tenants():
        return Certificate.all_tenants.get(website_id=site_pk)


def test_plan_with_ssl_issues_for_each_new_site(tenant_a, pdns_node_env, nginx_node, pebble, settings,  # noqa: F811
                                                 django_capture_on_commit_callbacks):  # fmt: skip
    settings.MPANEL_SSL_AUTO_ISSUE = True
    node = node_in(tenant_a)
    zone_name = f"auto{uuid.uuid4().hex[:8]}.example"
    first, second, own = f"www.{zone_name}", f"blog.{zone_name}", f"own.{zone_name}"
    with tenant_a.scope():
        zone = dns_services.zone_create(tenant=tenant_a.tenant, name=zone_name, node=node)
        for host in (first, second, own):
            dns_services.record_create(zone=zone, name=host.split(".")[0], type="A", content="127.0.0.1")
    plan = plan_in(tenant_a, config={**PLAN, "mailboxes": 0})
    sub = order_paid(tenant_a, django_capture_on_commit_callbacks, plan, domain=first)
    account = account_of(sub)
    assert account.website_id
    cert = certificate_of(account.website_id)
    assert cert.status == CertificateStatus.VALID, cert.last_error
    assert cert.names == [first] and cert.installed_fingerprint == cert.fingerprint
    root = pebble.root_pem()
    assert wait_served(nginx_node, first, root, int(cert.serial, 16)).serial_number == int(cert.serial, 16)

    # A second website for the same customer, through the API: its own certificate, unasked.
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    made = admin.post(reverse("website-list"), {"primary_domain": second, "customer": str(sub.customer_id),
                                                "node": str(node.pk)}, format="json")  # fmt: skip
    assert made.status_code == 201, made.content
    cert2 = certificate_of(made.json()["id"])
    assert cert2.status == CertificateStatus.VALID and cert2.names == [second], cert2.last_error
    assert wait_served(nginx_node, second, root, int(cert2.serial, 16)).serial_number == int(cert2.serial, 16)

    # The tenant's own website (no plan), and a site with HTTPS off: no certificate unless asked.
    with tenant_a.scope():
        site = website_services.website_create(tenant=tenant_a.tenant, primary_domain=own, node=node)
    with all_tenants():
        assert not Certificate.all_tenants.filter(website=site).exists()
    off = admin.post(reverse("website-list"), {"primary_domain": f"off.{zone_name}", "https": False,
                                               "customer": str(sub.customer_id), "node": str(node.pk)},
                     format="json")  # fmt: skip
    assert off.status_code == 201, off.content
    with all_tenants():
        assert not Certificate.all_tenants.filter(website_id=off.json()["id"]).exists()
