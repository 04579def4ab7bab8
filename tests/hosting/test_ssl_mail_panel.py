"""Mail hostnames, panel side (issue 19): a certificate bound to a mail node
(``POST /api/v1/enterprise/ssl/<id>/install-mail``, ADMIN+) is pushed by the job ``ssl.mail.install``
through the node driver to the node's ``mail_tls``; the agent merges the TLS settings into the real
Postfix's ``main.cf`` (``postconf -e``) and reloads Postfix and Dovecot. Verified with STARTTLS
against the real Postfix smtpd (``smtplib``) and IMAPS against the real Dovecot, each with the
certificate's own root as the only trust anchor. A renewal from pebble is pushed again (new serial
served). Only a node of the certificate's own tenant with the ``mail`` role can be named."""

from __future__ import annotations

import json
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from django.urls import reverse
from django.utils import timezone

from apps.jobs.models import Job, JobStatus
from apps.nodes.drivers import local_root
from apps.nodes.models import Node
from apps.ssl import services as ssl_services
from apps.ssl.models import Certificate, CertificateStatus
from apps.tenancy.roles import Role
from apps.tenancy.scoping import all_tenants
from tests.conftest import client_for
from tests.dns_support import free_port, pdns_node_env, powerdns  # noqa: F401  (fixtures)
from tests.mail_support import mail_tmp, tls_dovecot_conf  # noqa: F401  (fixtures)
from tests.postfix_support import MASTER_CF
from tests.ssl_support import key_marker, make_bundle, pebble  # noqa: F401  (fixtures)
from tests.web_support import nginx_node, web_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)  # jobs run in-process as they commit


@dataclass
class MailServers:
    """A real Postfix and Dovecot for the node root's ``mail/tls`` files, named to the agent through
    ``MPANEL_POSTFIX_CONFIG`` / ``MPANEL_DOVECOT_CONFIG`` as on a node."""

    smtp: int
    imaps: int
    postfix_conf: Path
    dovecot_conf: Path
    base: Path

    def start(self) -> None:
        started = subprocess.run(["postfix", "-c", str(self.postfix_conf), "start"], capture_output=True, text=True,
                                 timeout=60)  # fmt: skip
        assert started.returncode == 0, started.stderr
        with open(self.base / "dovecot-start.log", "wb") as out:  # a daemon: no pipe it would keep open
            started = subprocess.run(["dovecot", "-c", str(self.dovecot_conf)], stdout=out, stderr=subprocess.STDOUT,
                                     timeout=30)  # fmt: skip
        assert started.returncode == 0, (self.base / "dovecot-start.log").read_text()
        for port in (self.smtp, self.imaps):
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(self.logs()) from None
                    time.sleep(0.1)

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.postfix_conf), "stop"], capture_output=True, timeout=60)
        subprocess.run(["doveadm", "-c", str(self.dovecot_conf), "stop"], capture_output=True, timeout=30)

    def logs(self) -> str:
        out = []
        for name in ("maillog", "dovecot/dovecot.log"):
            path = self.base / name
            out.append(path.read_text()[-2000:] if path.exists() else "")
        return "\n".join(out)

    def starttls(self, name: str, root: str) -> x509.Certificate:
        """What Postfix's smtpd serves after STARTTLS to a client asking for ``name`` (SNI), verified
        (chain and name) by ``ssl`` with ``root`` as the only trust anchor."""
        context = ssl.create_default_context(cadata=root)
        with smtplib.SMTP("127.0.0.1", self.smtp, local_hostname="client.example", timeout=20) as smtp:
            smtp._host = name  # the name starttls() sends as SNI and verifies (we connect to the address)
            smtp.ehlo()
            assert smtp.has_extn("starttls"), "smtpd does not offer STARTTLS"
            code, _ = smtp.starttls(context=context)
            assert code == 220
            return x509.load_der_x509_certificate(smtp.sock.getpeercert(binary_form=True))

    def imaps_served(self, name: str, root: str) -> x509.Certificate:
        context = ssl.create_default_context(cadata=root)
        with (
            socket.create_connection(("127.0.0.1", self.imaps), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def wait_for(check, serial: int, timeout: float = 15) -> x509.Certificate:
    """A reload hands over to new processes: wait until one serves ``serial``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cert = check()
            if cert.serial_number == serial or time.monotonic() > deadline:
                return cert
        except (OSError, smtplib.SMTPException):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


@pytest.fixture
def mail_servers(mail_tmp, monkeypatch):  # noqa: F811
    for tool in ("postfix", "postconf", "postmap", "dovecot", "doveadm"):
        if shutil.which(tool) is None:
            pytest.fail("postfix, dovecot-core and dovecot-imapd are needed: run the tests with `make test`")
    tls_dir = local_root() / "mail" / "tls"  # where the job's LocalDriver writes (the node root)
    base = mail_tmp / "servers"
    conf, queue, data, dove = base / "postfix", base / "queue", base / "data", base / "dovecot"
    for d in (conf, queue, data, dove):
        d.mkdir(parents=True)
    shutil.chown(data, "postfix")
    smtp, imaps = free_port(), free_port()
    # TLS needs Postfix's tlsmgr (Debian's master.cf has it; the maps-only one of postfix_support not).
    (conf / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{smtp}") + "tlsmgr unix - - n 1000? 1 tlsmgr\n")
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": str(queue),
        "data_directory": str(data),
        "myhostname": "mail.mpanel.test",
        "mydestination": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "maillog_file": str(base / "maillog"),
        "maillog_file_prefixes": str(base),
    }
    (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    dovecot_conf = dove / "dovecot.conf"
    dovecot_conf.write_text(tls_dovecot_conf(dove, f"{tls_dir}/dovecot-tls.conf", imaps=imaps))
    monkeypatch.setenv("MPANEL_POSTFIX_CONFIG", str(conf))
    monkeypatch.setenv("MPANEL_DOVECOT_CONFIG", str(dovecot_conf))
    servers = MailServers(smtp=smtp, imaps=imaps, postfix_conf=conf, dovecot_conf=dovecot_conf, base=base)
    yield servers
    servers.stop()
    print(f"--- mail servers' logs ---\n{servers.logs()}")  # shown when a test fails


def mail_node(fx, roles=("mail",)) -> Node:
    with fx.scope():
        return Node.objects.create(tenant=fx.tenant, hostname=f"mail-{uuid.uuid4().hex[:6]}", roles=list(roles),
                                   vcpu=2, memory_mb=2048, disk_gb=20, max_pods=0)  # fmt: skip


def upload(fx, names: list[str]):
    bundle = make_bundle(names)
    with fx.scope():
        cert = ssl_services.certificate_upload(tenant=fx.tenant, certificate=bundle.certificate, chain=bundle.chain,
                                               private_key=bundle.private_key)  # fmt: skip
    return cert, bundle


def fresh(pk) -> Certificate:
    with all_tenants():
        return Certificate.all_tenants.get(pk=pk)


def bind(client, cert, node) -> object:
    url = reverse("ssl-certificate-install-mail", kwargs={"pk": cert.pk})
    return client.post(url, {"node": str(node.pk) if node else None}, format="json")


def mail_jobs() -> list[Job]:
    with all_tenants():
        return list(Job.all_tenants.filter(type=ssl_services.MAIL_JOB).order_by("created_at"))


def test_bind_pushes_to_postfix_and_dovecot_with_sni(tenant_a, tenant_b, mail_servers):
    node = mail_node(tenant_a)
    suffix = uuid.uuid4().hex[:8]
    first, first_bundle = upload(tenant_a, [f"mail.a{suffix}.example", f"imap.a{suffix}.example"])
    second, second_bundle = upload(tenant_a, [f"mx.b{suffix}.example"])
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)

    assert bind(member, first, node).status_code == 403
    response = bind(admin, first, node)
    assert response.status_code == 202, response.content
    assert response.json()["mail_node"] == str(node.pk)
    [job] = mail_jobs()
    assert job.status == JobStatus.SUCCEEDED, job.last_error
    assert job.payload == {"node": str(node.pk)}
    main_cf = (mail_servers.postfix_conf / "main.cf").read_text()
    assert "smtpd_tls_chain_files = " in main_cf and "smtpd_tls_security_level = may" in main_cf
    assert fresh(first.pk).installed_fingerprint == first.fingerprint

    mail_servers.start()
    for name in (f"mail.a{suffix}.example", f"imap.a{suffix}.example"):
        assert mail_servers.starttls(name, first_bundle.root).serial_number == int(first.serial, 16)
        assert mail_servers.imaps_served(name, first_bundle.root).serial_number == int(first.serial, 16)

    # A second certificate on the same node: served by SNI for its name (Postfix's SNI map,
    # Dovecot's local_name); the first stays the default. Both servers were reloaded by the job.
    assert bind(admin, second, node).status_code == 202
    assert mail_jobs()[-1].status == JobStatus.SUCCEEDED, mail_jobs()[-1].last_error
    assert "tls_server_sni_maps = " in (mail_servers.postfix_conf / "main.cf").read_text()
    name = f"mx.b{suffix}.example"
    serial = int(second.serial, 16)
    assert wait_for(lambda: mail_servers.starttls(name, second_bundle.root), serial).serial_number == serial
    assert wait_for(lambda: mail_servers.imaps_served(name, second_bundle.root), serial).serial_number == serial
    assert mail_servers.starttls(f"mail.a{suffix}.example", first_bundle.root).serial_number == int(first.serial, 16)

    # Taken off the node (node: null): the node gets its set without it; the SNI map goes.
    response = bind(admin, second, None)
    assert response.status_code == 202 and response.json()["mail_node"] is None
    assert mail_jobs()[-1].status == JobStatus.SUCCEEDED
    assert "tls_server_sni_maps" not in (mail_servers.postfix_conf / "main.cf").read_text()
    first_serial = int(first.serial, 16)
    served = wait_for(lambda: mail_servers.imaps_served(f"mail.a{suffix}.example", first_bundle.root), first_serial)
    assert served.serial_number == first_serial
    with pytest.raises(ssl.SSLCertVerificationError):  # the default certificate, not the one taken off
        mail_servers.starttls(name, second_bundle.root)

    # The key reaches the node only: in no job payload, result or error.
    marker = key_marker(first_bundle.private_key)
    with all_tenants():
        jobs = json.dumps(list(Job.all_tenants.values("payload", "result", "last_error", "error_detail")), default=str)
    assert marker not in jobs


def test_only_the_tenants_own_mail_node_and_a_serving_certificate(tenant_a, tenant_b):
    node_a = mail_node(tenant_a)
    web_only = mail_node(tenant_a, roles=("web",))
    cert_a, _ = upload(tenant_a, [f"mail.{uuid.uuid4().hex[:8]}.example"])
    cert_b, _ = upload(tenant_b, [f"mail.{uuid.uuid4().hex[:8]}.example"])
    admin_a = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    admin_b = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)

    assert bind(admin_b, cert_a, node_a).status_code == 404  # another tenant's certificate
    refused = bind(admin_b, cert_b, node_a)  # another tenant's node: not found in its scope
    assert refused.status_code == 400 and "node" in json.dumps(refused.json()), refused.content
    refused = bind(admin_a, cert_a, web_only)
    assert refused.status_code == 400 and "mail role" in json.dumps(refused.json())
    assert bind(admin_a, cert_a, None).status_code == 202  # nothing bound: nothing pushed
    assert mail_jobs() == []
    assert fresh(cert_b.pk).mail_node_id is None and fresh(cert_a.pk).mail_node_id is None

    # A revoked certificate is not installed anywhere.
    with tenant_a.scope():
        ssl_services.certificate_revoke(certificate=fresh(cert_a.pk))
    refused = bind(admin_a, cert_a, node_a)
    assert refused.status_code == 409 and fresh(cert_a.pk).mail_node_id is None


def test_renewal_pushes_the_new_certificate_to_the_mail_node(
    tenant_a,
    pdns_node_env,  # noqa: F811
    nginx_node,  # noqa: F811
    pebble,  # noqa: F811
    mail_servers,
):
    """Issued by pebble through the website's nginx (HTTP-01) for the mail hostname, bound to the
    mail node, renewed by the sweep: Postfix and Dovecot serve the new serial."""
    from apps.dns import services as dns_services
    from apps.websites import services as website_services

    zone_name = f"m{uuid.uuid4().hex[:8]}.example"
    host = f"mail.{zone_name}"
    with tenant_a.scope():
        web = Node.objects.create(tenant=tenant_a.tenant, hostname="web-dns-1", roles=["web", "dns"], vcpu=4,
                                  memory_mb=4096, disk_gb=50, max_pods=0)  # fmt: skip
        zone = dns_services.zone_create(tenant=tenant_a.tenant, name=zone_name, node=web)
        dns_services.record_create(zone=zone, name="mail", type="A", content="127.0.0.1")
        site = website_services.website_create(tenant=tenant_a.tenant, primary_domain=host, node=web, https=True)
    node = mail_node(tenant_a)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = admin.post(reverse("ssl-certificate-list"), {"website": str(site.pk)}, format="json")
    assert response.status_code == 201, response.content
    cert = fresh(response.json()["id"])
    assert cert.status == CertificateStatus.VALID, cert.last_error
    assert bind(admin, cert, node).status_code == 202
    mail_servers.start()
    root = pebble.root_pem()
    assert mail_servers.starttls(host, root).serial_number == int(cert.serial, 16)
    assert mail_servers.imaps_served(host, root).serial_number == int(cert.serial, 16)

    Certificate.all_tenants.filter(pk=cert.pk).update(renew_after=timezone.now() - timedelta(minutes=1))
    assert ssl_services.sweep()["renewing"] == 1
    renewed = fresh(cert.pk)
    assert renewed.status == CertificateStatus.VALID and renewed.serial != cert.serial, renewed.last_error
    serial = int(renewed.serial, 16)
    assert wait_for(lambda: mail_servers.starttls(host, root), serial).serial_number == serial
    assert wait_for(lambda: mail_servers.imaps_served(host, root), serial).serial_number == serial
    assert mail_jobs()[-1].status == JobStatus.SUCCEEDED


def test_admin_installs_on_a_mail_node_of_the_certificates_tenant(client, tenant_a, tenant_b, mail_servers):
    from django.contrib.auth import get_user_model

    from tests.conftest import PASSWORD, admin_login

    operator = admin_login(client, get_user_model().objects.create_superuser(f"op{uuid.uuid4().hex[:6]}@mpanel.test",
                                                                            PASSWORD))  # fmt: skip
    node, foreign = mail_node(tenant_a), mail_node(tenant_b)
    cert, _bundle = upload(tenant_a, [f"mail.{uuid.uuid4().hex[:8]}.example"])
    url = reverse("admin:ssl_certificate_object_action", args=[cert.pk, "install_mail"])
    page = operator.get(url)
    assert page.status_code == 200 and node.hostname in page.content.decode()
    assert foreign.hostname not in page.content.decode()  # only the certificate's tenant's mail nodes
    assert operator.post(url, {"node": str(foreign.pk)}).status_code == 200  # the form again, with its error
    assert fresh(cert.pk).mail_node_id is None
    response = operator.post(url, {"node": str(node.pk)})
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert fresh(cert.pk).mail_node_id == node.pk
    assert mail_jobs()[-1].status == JobStatus.SUCCEEDED, mail_jobs()[-1].last_error
    assert fresh(cert.pk).installed_fingerprint == cert.fingerprint
