"""A verified custom portal domain gets a trusted certificate from the SSL module: a real ACME CA
(Debian's pebble) validates HTTP-01 against the panel itself (a live server: the custom domain points
at the panel, which answers ``/.well-known/acme-challenge/<token>`` from the certificate's row), the
names resolve through our real PowerDNS, and the chain is verified against pebble's root. The
self-signed certificate serves meanwhile and stays when issuance fails (the API says which); the SSL
sweep renews the trusted one and the domain takes the new one. Jobs run in-process as they commit."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django.urls import reverse
from django.utils import timezone

from apps.dns import services as dns_services
from apps.ssl import services as ssl_services
from apps.ssl.models import Certificate, CertificateStatus
from apps.tenancy.roles import Role
from apps.tenancy.scoping import all_tenants
from apps.whitelabel import crypto, selectors, services
from apps.whitelabel.models import CertificateKind, CustomDomain, DomainStatus
from tests.conftest import client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401  (fixtures)
from tests.hosting.test_dns import dns_node
from tests.ssl_support import start_pebble

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ca(tmp_path, settings, pdns_node_env, live_server):  # noqa: F811
    """Pebble validating HTTP-01 on the live server's port (the panel), resolving through PowerDNS."""
    settings.MPANEL_SSL_AUTO_ISSUE = True
    settings.MPANEL_DNS_RESOLVERS = [f"127.0.0.1:{pdns_node_env.dns_port}"]
    settings.MPANEL_DNS_RESOLVER_TIMEOUT = 3
    server = start_pebble(tmp_path / "pebble", settings, http_port=urlsplit(live_server.url).port,
                          dns_server=f"127.0.0.1:{pdns_node_env.dns_port}")  # fmt: skip
    yield server
    server.stop()
    print(f"--- pebble's log ---\n{(server.dir / 'pebble.log').read_text()[-4000:]}")  # shown when a test fails


def _fresh_domain(pk) -> CustomDomain:
    with all_tenants():
        return CustomDomain.all_tenants.select_related("certificate").get(pk=pk)


def _claim(fx, zone, host: str, *, resolves: bool) -> CustomDomain:
    """The tenant adds ``host`` and publishes its TXT proof (and, with ``resolves``, its A record to
    the panel, here 127.0.0.1) in its zone on the real PowerDNS."""
    with fx.scope():
        domain = services.domain_add(tenant=fx.tenant, hostname=host, actor=fx.owner)
        relative = host.removesuffix("." + zone.name)
        dns_services.record_create(zone=zone, name=f"_mpanel-verify.{relative}", type="TXT",
                                   content=domain.record_value)  # fmt: skip
        if resolves:
            dns_services.record_create(zone=zone, name=relative, type="A", content="127.0.0.1")
    return domain


def _leaf(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_a_verified_custom_domain_gets_a_trusted_certificate_renewed_by_the_sweep(tenant_a, ca, pdns_node_env):  # noqa: F811
    zone_name = f"brand{uuid.uuid4().hex[:8]}.example"
    with tenant_a.scope():
        zone = dns_services.zone_create(tenant=tenant_a.tenant, name=zone_name, node=dns_node(tenant_a))
    host = f"my.{zone_name}"
    domain = _claim(tenant_a, zone, host, resolves=True)

    # Verifying makes the self-signed fallback and asks the SSL module; the issue job runs as it commits.
    with tenant_a.scope():
        services.domain_verify(domain=domain, actor=tenant_a.owner)
    domain = _fresh_domain(domain.pk)
    cert = domain.certificate
    assert cert is not None and cert.status == CertificateStatus.VALID, cert and cert.last_error
    assert cert.names == [host] and cert.source == "acme" and cert.website_id is None
    assert domain.status == DomainStatus.VERIFIED and domain.certificate_kind == CertificateKind.ACME

    # The domain serves the issued certificate: its chain leads to pebble's root, for this host only.
    leaf = _leaf(domain.certificate_pem)
    root = x509.load_pem_x509_certificate(ca.root_pem().encode())
    chain = x509.load_pem_x509_certificates(domain.certificate_pem.encode())
    assert len(chain) >= 2 and leaf.issuer != leaf.subject
    assert chain[-1].issuer == root.subject
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [host]
    assert leaf.fingerprint(hashes.SHA256()).hex(":") == domain.certificate_sha256
    assert domain.certificate_not_after == cert.not_after
    full_chain, key_pem = selectors.portal_tls(host.upper() + ".")
    assert full_chain == domain.certificate_pem
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()
    assert "PRIVATE KEY" not in domain.certificate_key_encrypted
    assert crypto.decrypt(domain.certificate_key_encrypted) == key_pem
    # The challenge answer is taken down once the order is done.
    assert cert.challenges == []

    # The API says it is trusted and which certificate of the SSL module it is.
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    shown = member.get(reverse("whitelabel-domain-detail", kwargs={"pk": domain.pk})).json()["certificate"]
    assert shown["kind"] == "acme" and shown["trusted"] is True
    assert shown["issuance"] == {"id": str(cert.pk), "status": "valid", "error": ""}

    # Renewal: the SSL sweep renews it like any ACME certificate, and the domain takes the new one.
    Certificate.all_tenants.filter(pk=cert.pk).update(renew_after=timezone.now() - timedelta(minutes=1))
    assert ssl_services.sweep()["renewing"] == 1
    renewed = _fresh_domain(domain.pk)
    assert renewed.certificate.status == CertificateStatus.VALID, renewed.certificate.last_error
    assert renewed.certificate.serial != cert.serial
    assert _leaf(renewed.certificate_pem).serial_number == int(renewed.certificate.serial, 16)
    assert renewed.certificate_sha256 != domain.certificate_sha256


def test_issuance_that_fails_keeps_the_self_signed_certificate_and_says_so(tenant_a, tenant_b, ca, live_server):
    zone_name = f"brand{uuid.uuid4().hex[:8]}.example"
    with tenant_a.scope():
        zone = dns_services.zone_create(tenant=tenant_a.tenant, name=zone_name, node=dns_node(tenant_a))
    host = f"nowhere.{zone_name}"
    domain = _claim(tenant_a, zone, host, resolves=False)  # proved, but the name does not reach the panel
    with tenant_a.scope():
        services.domain_verify(domain=domain, actor=tenant_a.owner)
    domain = _fresh_domain(domain.pk)
    assert domain.certificate.status == CertificateStatus.FAILED and domain.certificate.last_error
    assert domain.certificate_kind == CertificateKind.SELF_SIGNED
    leaf = _leaf(domain.certificate_pem)
    assert leaf.issuer == leaf.subject  # still the self-signed one, served as the fallback
    assert selectors.portal_tls(host)[0] == domain.certificate_pem
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    shown = admin.get(reverse("whitelabel-domain-detail", kwargs={"pk": domain.pk})).json()["certificate"]
    assert shown["kind"] == "self-signed" and shown["trusted"] is False
    assert shown["issuance"]["status"] == "failed" and shown["issuance"]["error"]
    assert "could not be issued" in shown["note"]

    # The panel answers challenges only for a certificate under way, on its own host.
    assert client_for().get("/.well-known/acme-challenge/anything", HTTP_HOST=host).status_code == 404

    # The tenant points the name at the panel and asks again (ADMIN+): the trusted certificate serves.
    retry = reverse("whitelabel-domain-certificate-retry", kwargs={"pk": domain.pk})
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    assert member.post(retry).status_code == 403
    with tenant_a.scope():
        dns_services.record_create(zone=zone, name="nowhere", type="A", content="127.0.0.1")
    answer = admin.post(retry)
    assert answer.status_code == 200, answer.content
    domain = _fresh_domain(domain.pk)
    assert domain.certificate.status == CertificateStatus.VALID, domain.certificate.last_error
    assert domain.certificate_kind == CertificateKind.ACME and _leaf(domain.certificate_pem).issuer != leaf.issuer
    refused = admin.post(retry)  # serving a valid one: nothing to ask for
    assert refused.status_code == 409 and refused.json()["code"] == "certificate_in_progress", refused.content
    other = client_for(tenant_b.users[Role.OWNER], tenant_b.tenant)
    assert other.post(retry).status_code == 404
