"""Revoke on delete: a deleted certificate, or a deleted website's, is revoked at the CA (pebble) when
the tenant asks: ``?revoke=true`` on the delete, or its ``revoke_on_delete`` setting."""

from __future__ import annotations

import json
import ssl
import urllib.request
import uuid

import pytest
from django.urls import reverse

from apps.dns import services as dns_services
from apps.dns.models import Zone
from apps.ssl import services as ssl_services
from apps.ssl.models import CertificateStatus
from apps.tenancy.roles import Role
from apps.websites import services as website_services
from tests.conftest import client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401  (fixtures)
from tests.hosting.test_ssl_acme import fresh, issue_via_api, node_in, zone_with_site
from tests.ssl_support import pebble  # noqa: F401  (fixtures)
from tests.web_support import nginx_node, web_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def status_at_ca(pebble, serial_hex: str) -> str:  # noqa: F811
    """What pebble's management interface says of the certificate: "Valid" or "Revoked"."""
    context = ssl.create_default_context(cafile=str(pebble.ca_bundle))
    url = f"{pebble.management}/cert-status-by-serial/{serial_hex.lower()}"
    with urllib.request.urlopen(url, context=context, timeout=10) as answer:
        return json.loads(answer.read())["Status"]


def test_delete_revokes_when_asked(tenant_a, pdns_node_env, nginx_node, pebble):  # noqa: F811
    node = node_in(tenant_a)
    zone_name = f"rev{uuid.uuid4().hex[:8]}.example"
    hosts = [f"a.{zone_name}", f"b.{zone_name}", f"c.{zone_name}"]
    _zone, site_a = zone_with_site(tenant_a, node, zone_name, [hosts[0]])
    with tenant_a.scope():
        site_b = website_services.website_create(tenant=tenant_a.tenant, primary_domain=hosts[1], node=node)
        site_c = website_services.website_create(tenant=tenant_a.tenant, primary_domain=hosts[2], node=node)
        zone = Zone.objects.get(name=zone_name)
        for host in hosts[1:]:
            dns_services.record_create(zone=zone, name=host.removesuffix("." + zone_name), type="A",
                                       content="127.0.0.1")  # fmt: skip
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    cert_a = issue_via_api(admin, {"website": str(site_a.pk)})
    cert_b = issue_via_api(admin, {"website": str(site_b.pk)})
    cert_c = issue_via_api(admin, {"website": str(site_c.pk)})
    for cert in (cert_a, cert_b, cert_c):
        assert cert.status == CertificateStatus.VALID, cert.last_error
        assert status_at_ca(pebble, cert.serial) == "Valid"

    # A bad flag is a 400, nothing deleted.
    url = reverse("ssl-certificate-detail", kwargs={"pk": cert_a.pk})
    assert admin.delete(url + "?revoke=perhaps").status_code == 400
    assert fresh(cert_a.pk).status == CertificateStatus.VALID
    # The certificate deleted with ?revoke=true: revoked at the CA by the delete job.
    assert admin.delete(url + "?revoke=true").status_code == 202
    deleted = fresh(cert_a.pk)
    assert deleted.status == CertificateStatus.DELETED and deleted.revoked_at is not None
    assert status_at_ca(pebble, cert_a.serial) == "Revoked"

    # The tenant's setting: a deleted website's certificate is revoked without being asked each time...
    with tenant_a.scope():
        ssl_services.settings_update(tenant=tenant_a.tenant, data={"revoke_on_delete": True})
    assert admin.delete(reverse("website-detail", kwargs={"pk": site_b.pk})).status_code == 202
    assert fresh(cert_b.pk).status == CertificateStatus.REVOKED
    assert status_at_ca(pebble, cert_b.serial) == "Revoked"
    # ...unless this delete says otherwise.
    assert admin.delete(reverse("website-detail", kwargs={"pk": site_c.pk}) + "?revoke=false").status_code == 202
    assert fresh(cert_c.pk).status == CertificateStatus.VALID
    assert status_at_ca(pebble, cert_c.serial) == "Valid"
