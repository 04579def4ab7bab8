"""OCSP stapling where the chain has a responder (checked by a real ``nginx -t``), and ACME Renewal
Information (RFC 9773): the sweep renews inside the window the CA suggests when its directory offers
``renewalInfo`` (Debian's pebble 2.4 does not: a recorded ARI answer is served here, by a local
directory), else at two thirds of the lifetime."""

from __future__ import annotations

import base64
import datetime
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509

from agent.web import WebRuntime
from apps.ssl import ca
from apps.ssl import services as ssl_services
from apps.ssl.crypto import seal
from apps.ssl.models import AcmeAccount, Certificate, CertificateSource, CertificateStatus
from apps.tenancy.scoping import all_tenants
from tests.ssl_support import make_bundle, wait_served
from tests.web_support import nginx_node, web_root  # noqa: F401  (fixtures)

# --- OCSP stapling --------------------------------------------------------------------------------


def test_stapling_only_when_the_chain_has_a_responder(nginx_node):  # noqa: F811
    web = WebRuntime(nginx_node.root / "web")
    with_responder = make_bundle(["ocsp.example"], ocsp="http://ocsp.responder.invalid/")
    without = make_bundle(["plain.example"])
    for site_id, domain, bundle, stapled in (("wocsp", "ocsp.example", with_responder, True),
                                             ("wplain", "plain.example", without, False)):  # fmt: skip
        tls = {"certificate": bundle.certificate + bundle.chain, "private_key": bundle.private_key}
        spec = {"id": site_id, "domains": [domain], "status": "active", "https": True, "tls": tls}
        web.site_ensure(spec)  # swapped in only after nginx -t accepted it
        vhost = (nginx_node.root / "web" / "sites" / f"{site_id}.conf").read_text()
        assert ("ssl_stapling on;" in vhost) is stapled and ("ssl_stapling_verify on;" in vhost) is stapled
        assert wait_served(nginx_node, domain, bundle.root).subject.rfc4514_string() == f"CN={domain}"
    # A leaf with a responder but no chain to ask about it with: no stapling either.
    lone = make_bundle(["lone.example"], ocsp="http://ocsp.responder.invalid/")
    web.site_ensure({"id": "wlone", "domains": ["lone.example"], "status": "active", "https": True,
                     "tls": {"certificate": lone.certificate, "private_key": lone.private_key}})  # fmt: skip
    assert "ssl_stapling" not in (nginx_node.root / "web" / "sites" / "wlone.conf").read_text()


# --- ARI ------------------------------------------------------------------------------------------


def ari_id(pem: str) -> str:
    """RFC 9773 4.1: base64url(AKI key id) "." base64url(serial, DER INTEGER content)."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{b64(aki)}.{b64(serial)}"


class FakeDirectory:
    """A CA's directory on loopback (HTTP) with or without ``renewalInfo``, answering the recorded
    renewal information for one certificate id; every other id is a 404, as at a real CA."""

    def __init__(self):
        self.offer_ari = True
        self.window: tuple[str, str] = ("", "")
        self.cert_id = ""
        self.asked: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                base = f"http://127.0.0.1:{outer.port}"
                if self.path == "/dir":
                    body = {k: f"{base}/{k}" for k in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange")}
                    if outer.offer_ari:
                        body["renewalInfo"] = f"{base}/renewal-info"
                    return self._json(200, body)
                if self.path.startswith("/renewal-info/"):
                    asked = self.path.removeprefix("/renewal-info/")
                    outer.asked.append(asked)
                    if asked != outer.cert_id:
                        return self._json(404, {"type": "urn:ietf:params:acme:error:malformed"})
                    # As Let's Encrypt answers it (recorded shape), with this test's window.
                    start, end = outer.window
                    return self._json(200, {"suggestedWindow": {"start": start, "end": end},
                                            "explanationURL": "https://community.example/ari"})  # fmt: skip
                return self._json(404, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def directory(settings):
    fake = FakeDirectory()
    settings.MPANEL_ACME_DIRECTORY = f"http://127.0.0.1:{fake.port}/dir"
    settings.MPANEL_ACME_CA_BUNDLE = ""
    yield fake
    fake.close()


def acme_certificate(fx, names: list[str]) -> Certificate:
    """An issued certificate as the issue job leaves it (its account at this directory)."""
    bundle = make_bundle(names, days=90)
    with fx.scope():
        account = AcmeAccount.objects.create(tenant=fx.tenant, directory=ca.directory_url(), uri="http://acct/1",
                                             key_encrypted=seal(ca.new_key_pem()))  # fmt: skip
        cert = ssl_services.certificate_upload(tenant=fx.tenant, certificate=bundle.certificate, chain=bundle.chain,
                                               private_key=bundle.private_key)  # fmt: skip
        Certificate.objects.filter(pk=cert.pk).update(source=CertificateSource.ACME, account=account)
        return Certificate.objects.get(pk=cert.pk)


def iso(value: datetime.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.django_db
def test_sweep_follows_the_suggested_window(tenant_a, directory):
    cert = acme_certificate(tenant_a, ["ari.example"])
    two_thirds = cert.renew_after
    now = datetime.datetime.now(datetime.UTC)
    start, end = now + datetime.timedelta(days=20), now + datetime.timedelta(days=21)
    directory.cert_id, directory.window = ari_id(cert.certificate_pem), (iso(start), iso(end))

    assert ssl_services.sweep()["renewing"] == 0
    with all_tenants():
        cert.refresh_from_db()
    assert directory.asked == [directory.cert_id]
    assert start - datetime.timedelta(seconds=1) <= cert.renew_after <= end and cert.renew_after < two_thirds
    assert cert.ari_next_at > now  # asked again later (Retry-After, or six hours), not every sweep
    ssl_services.sweep()
    assert len(directory.asked) == 1

    # The CA moves the window into the past (it must revoke early): the next ask renews at once.
    directory.window = (iso(now - datetime.timedelta(hours=2)), iso(now - datetime.timedelta(hours=1)))
    Certificate.all_tenants.filter(pk=cert.pk).update(ari_next_at=None)
    assert ssl_services.sweep()["renewing"] == 1
    with all_tenants():
        cert.refresh_from_db()
    assert cert.status == CertificateStatus.RENEWING and cert.renew_after < now


@pytest.mark.django_db
def test_without_renewal_info_two_thirds_of_the_lifetime(tenant_a, directory):
    directory.offer_ari = False
    cert = acme_certificate(tenant_a, ["noari.example"])
    lifetime = cert.not_after - cert.not_before
    assert ssl_services.sweep()["renewing"] == 0
    with all_tenants():
        cert.refresh_from_db()
    assert directory.asked == [] and cert.renew_after == cert.not_before + lifetime * 2 / 3
    assert cert.ari_next_at is not None
