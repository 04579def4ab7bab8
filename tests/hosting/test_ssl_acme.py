"""SSL certificates from a real ACME CA (Debian's pebble), validated through our real nginx
(HTTP-01) and our real PowerDNS (DNS-01), installed on the website and verified with Python's
``ssl`` against pebble's root as the only trust anchor. Jobs run in-process as they commit
(``transaction=True``: each issuance step commits on its own, as in production)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.dns import services as dns_services
from apps.dns.models import Record
from apps.jobs import services as job_services
from apps.jobs.models import Job, JobStatus
from apps.nodes.models import Node
from apps.ssl import ca
from apps.ssl import services as ssl_services
from apps.ssl.models import Certificate, CertificateStatus
from apps.tenancy.roles import Role
from apps.tenancy.scoping import all_tenants
from apps.websites import services as website_services
from tests.conftest import PASSWORD, client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401  (fixtures)
from tests.ssl_support import key_marker, pebble, served_certificate, wait_served  # noqa: F401  (fixtures)
from tests.web_support import nginx_node, web_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def node_in(fx) -> Node:
    with fx.scope():
        return Node.objects.create(tenant=fx.tenant, hostname="web-dns-1", roles=["web", "dns"], vcpu=4,
                                   memory_mb=4096, disk_gb=50, max_pods=0)  # fmt: skip


def zone_with_site(fx, node, zone_name: str, hosts: list[str]):
    """The tenant's zone (published on the test PowerDNS) with A records → 127.0.0.1, and a website."""
    with fx.scope():
        zone = dns_services.zone_create(tenant=fx.tenant, name=zone_name, node=node)
        for host in hosts:
            relative = host.removesuffix("." + zone_name) if host != zone_name else "@"
            dns_services.record_create(zone=zone, name=relative, type="A", content="127.0.0.1")
        site = website_services.website_create(tenant=fx.tenant, primary_domain=hosts[0], aliases=hosts[1:],
                                               node=node, https=True)  # fmt: skip
    return zone, site


def fresh(pk) -> Certificate:
    with all_tenants():
        return Certificate.all_tenants.get(pk=pk)


def issue_via_api(admin, body: dict) -> Certificate:
    response = admin.post(reverse("ssl-certificate-list"), body, format="json")
    assert response.status_code == 201, response.content
    return fresh(response.json()["id"])


def test_http01_issue_install_renew_and_ca_down(tenant_a, pdns_node_env, nginx_node, pebble):  # noqa: F811
    node = node_in(tenant_a)
    zone_name = f"ssl{uuid.uuid4().hex[:8]}.example"
    host, alias = f"www.{zone_name}", f"shop.{zone_name}"
    _zone, site = zone_with_site(tenant_a, node, zone_name, [host, alias])
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)

    cert = issue_via_api(admin, {"website": str(site.pk), "hsts": True})
    assert cert.status == CertificateStatus.VALID, cert.last_error
    assert cert.names == [host, alias] and cert.installed_fingerprint == cert.fingerprint
    root = pebble.root_pem()
    served = wait_served(nginx_node, host, root, int(cert.serial, 16))
    assert served.serial_number == int(cert.serial, 16)  # chain and name verified by ssl itself
    assert wait_served(nginx_node, alias, root).serial_number == served.serial_number
    _status, _text, headers = nginx_node.get(host, https=True)
    assert headers.get("Strict-Transport-Security") == "max-age=31536000"
    key_file = next((nginx_node.root / "web" / "ssl").glob(f"{site.site_id}.*.key"))
    assert key_file.stat().st_mode & 0o777 == 0o600
    # The challenge answers are taken down once the order is done.
    assert not list((nginx_node.root / "web" / "acme" / site.site_id / ".well-known" / "acme-challenge").iterdir())
    assert fresh(cert.pk).challenges == []

    # The API shows certificate and chain, never the key; the key needs ADMIN+ and the password.
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    body = member.get(reverse("ssl-certificate-download", kwargs={"pk": cert.pk})).json()
    assert body["certificate"].startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" not in str(body)
    key_url = reverse("ssl-certificate-key", kwargs={"pk": cert.pk})
    assert member.post(key_url, {"password": "x"}, format="json").status_code == 403
    assert admin.post(key_url, {"password": "wrong"}, format="json").status_code == 400
    answer = admin.post(key_url, {"password": PASSWORD}, format="json")
    assert answer.status_code == 200 and "PRIVATE KEY" in answer.json()["private_key"]
    # The key that issuance made and the node serves: in no job (payload, result, error) or audit record.
    marker = key_marker(answer.json()["private_key"])
    assert key_file.read_text() == answer.json()["private_key"]
    with all_tenants():
        jobs = json.dumps(list(Job.all_tenants.values("payload", "result", "last_error", "error_detail")), default=str)
    assert "ssl.certificate" in json.dumps(list(AuditEvent.objects.values("action")))
    assert marker not in jobs and marker not in json.dumps(list(AuditEvent.objects.values()), default=str)

    # Renewal: the sweep renews a certificate past its renewal time; nginx serves the new serial.
    Certificate.all_tenants.filter(pk=cert.pk).update(renew_after=timezone.now() - timedelta(minutes=1))
    assert ssl_services.sweep()["renewing"] == 1
    renewed = fresh(cert.pk)
    assert renewed.status == CertificateStatus.VALID and renewed.serial != cert.serial, renewed.last_error
    assert wait_served(nginx_node, host, root, int(renewed.serial, 16)).serial_number == int(renewed.serial, 16)

    # The CA is down: the renewal fails, the old certificate keeps serving, a retry is scheduled,
    # and 14 days before expiry the tenant's admins are told.
    pebble.stop()
    Certificate.all_tenants.filter(pk=cert.pk).update(
        renew_after=timezone.now() - timedelta(minutes=1), not_after=timezone.now() + timedelta(days=10)
    )
    mail.outbox.clear()
    ssl_services.sweep()
    down = fresh(cert.pk)
    assert down.status in (CertificateStatus.RENEWING, CertificateStatus.VALID)
    issue_job = Job.all_tenants.filter(object_id=str(cert.pk), type="ssl.certificate.issue").first()
    assert issue_job.status == JobStatus.PENDING and issue_job.attempts == 1  # retried with backoff
    assert "cannot be reached" in down.last_error
    assert wait_served(nginx_node, host, root, int(renewed.serial, 16)).serial_number == int(renewed.serial, 16)
    assert down.alerted_at is not None
    assert any("expires in" in m.subject for m in mail.outbox)
    assert AuditEvent.objects.filter(action="ssl.certificate.expiring", object_id=str(cert.pk)).exists()
    # The last attempt gives up: back to valid (still serving), a retry time, the CA's error kept.
    Job.all_tenants.filter(pk=issue_job.pk).update(attempts=issue_job.max_attempts - 1, run_after=timezone.now())
    job_services.run_job(issue_job.pk)
    gave_up = fresh(cert.pk)
    assert gave_up.status == CertificateStatus.VALID and gave_up.retry_after > timezone.now()
    assert gave_up.failures == 1 and gave_up.order_url == ""
    assert ssl_services.sweep()["renewing"] == 0  # not before the retry time


def test_dns01_wildcard_through_powerdns(tenant_a, pdns_node_env, nginx_node, pebble):  # noqa: F811
    node = node_in(tenant_a)
    zone_name = f"wild{uuid.uuid4().hex[:8]}.example"
    zone, _site = zone_with_site(tenant_a, node, zone_name, [f"www.{zone_name}"])
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    cert = issue_via_api(admin, {"names": [f"*.{zone_name}", zone_name], "challenge": "dns-01"})
    assert cert.status == CertificateStatus.VALID, cert.last_error
    assert sorted(cert.names) == sorted([f"*.{zone_name}", zone_name])
    # The TXT records were removed from the zone (and the zone pushed again) once the order was done.
    with all_tenants():
        assert not Record.all_tenants.filter(zone=zone, type="TXT").exists()
    assert pdns_node_env.ask(f"_acme-challenge.{zone_name}", "TXT") == []


def test_killed_worker_resumes_the_same_order(tenant_a, pdns_node_env, nginx_node, pebble, monkeypatch):  # noqa: F811
    """A worker killed between authorisation and finalisation: one order, one certificate."""
    node = node_in(tenant_a)
    zone_name = f"kill{uuid.uuid4().hex[:8]}.example"
    host = f"www.{zone_name}"
    _zone, site = zone_with_site(tenant_a, node, zone_name, [host])
    orders = []
    real_new_order = ca.new_order
    monkeypatch.setattr(ca, "new_order", lambda client, csr: orders.append(1) or real_new_order(client, csr))

    class Killed(BaseException):  # what SIGKILL looks like from inside: nothing after it runs
        pass

    def killed(cert):
        raise Killed

    monkeypatch.setattr(ssl_services, "after_authorization", killed)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    with pytest.raises(Killed):
        admin.post(reverse("ssl-certificate-list"), {"website": str(site.pk)}, format="json")
    cert = Certificate.all_tenants.get(website=site)
    assert cert.status == CertificateStatus.ISSUING and cert.order_url and len(orders) == 1
    job = Job.all_tenants.get(object_id=str(cert.pk), type="ssl.certificate.issue")
    assert job.status == JobStatus.RUNNING

    # The worker is gone; the sweeper takes the job back and runs it again: the same order.
    monkeypatch.setattr(ssl_services, "after_authorization", lambda cert: None)
    Job.all_tenants.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    job_services.sweep()
    done = fresh(cert.pk)
    assert done.status == CertificateStatus.VALID, done.last_error
    assert len(orders) == 1
    assert wait_served(nginx_node, host, pebble.root_pem()).serial_number == int(done.serial, 16)


def test_http01_refused_when_nginx_does_not_serve_the_name(tenant_a, pdns_node_env, nginx_node, pebble):  # noqa: F811
    """A name whose A record points nowhere we serve: pebble's validation fails, the CA's error is
    on the certificate, and it is ``failed`` (a first issuance has nothing to keep serving)."""
    node = node_in(tenant_a)
    zone_name = f"bad{uuid.uuid4().hex[:8]}.example"
    host = f"www.{zone_name}"
    with tenant_a.scope():
        dns_services.zone_create(tenant=tenant_a.tenant, name=zone_name, node=node)  # no A record
        site = website_services.website_create(tenant=tenant_a.tenant, primary_domain=host, node=node)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    cert = issue_via_api(admin, {"website": str(site.pk)})
    assert cert.status == CertificateStatus.FAILED
    assert "Validation of" in cert.last_error or "refused" in cert.last_error
    assert served_certificate.__name__  # the site still serves its self-signed certificate
