"""DNS-01 through BIND: the challenge's TXT record written by the ``bind`` DNS backend (the zone file
rewritten, checked and reloaded through rndc), pebble resolving it from that real named (its
``-dnsserver``), and a wildcard certificate issued; the record is gone afterwards."""

from __future__ import annotations

import subprocess
import uuid

import dns.rcode
import pytest
from cryptography import x509

from apps.dns import services as dns_services
from apps.dns.models import Record, Zone
from apps.ssl import services as ssl_services
from apps.ssl.models import Certificate, CertificateStatus
from apps.tenancy.scoping import all_tenants
from tests.hosting.test_dns import dns_node
from tests.hosting.test_dns_bind import ask, checkzone, named  # noqa: F401  (fixtures)
from tests.ssl_support import free_port, start_pebble

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.usefixtures("checkzone")
def test_dns01_wildcard_through_bind(tenant_a, named, settings, tmp_path):  # noqa: F811
    root, port, _rndc = named
    settings.MPANEL_NODE_ROOT = root
    pebble = start_pebble(tmp_path / "pebble", settings, http_port=free_port(), dns_server=f"127.0.0.1:{port}")
    try:
        node = dns_node(tenant_a)
        zone_name = f"bind{uuid.uuid4().hex[:8]}.example"
        with tenant_a.scope():
            zone = dns_services.zone_create(tenant=tenant_a.tenant, name=zone_name, node=node)
        assert ask(port, f"{zone_name}.", "SOA")[0] == dns.rcode.NOERROR  # named serves the zone
        with tenant_a.scope():
            cert = ssl_services.certificate_issue(tenant=tenant_a.tenant, names=[f"*.{zone_name}", zone_name],
                                                  challenge="dns-01")  # fmt: skip
        with all_tenants():
            cert = Certificate.all_tenants.get(pk=cert.pk)
        assert cert.status == CertificateStatus.VALID, cert.last_error
        leaf = x509.load_pem_x509_certificate(cert.certificate_pem.encode())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
        assert sorted(san) == sorted([f"*.{zone_name}", zone_name])
        # The chain leads to pebble's root (openssl's own verification, the root the only anchor).
        (tmp_path / "root.pem").write_text(pebble.root_pem())
        (tmp_path / "chain.pem").write_text(cert.chain_pem)
        (tmp_path / "leaf.pem").write_text(cert.certificate_pem)
        verified = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "root.pem"), "-untrusted",
                                   str(tmp_path / "chain.pem"), str(tmp_path / "leaf.pem")],
                                  capture_output=True, text=True)  # fmt: skip
        assert verified.returncode == 0, verified.stdout + verified.stderr
        # The answers were taken down: out of the zone and out of what named serves.
        with all_tenants():
            assert not Record.all_tenants.filter(zone=zone, type="TXT").exists()
            served = Zone.all_tenants.get(pk=zone.pk)
        assert served.served_serial == served.serial
        assert ask(port, f"_acme-challenge.{zone_name}.", "TXT")[1] == []
        assert "_acme-challenge" not in (root / "dns" / "bind" / f"{zone_name}.zone").read_text()
    finally:
        pebble.stop()
