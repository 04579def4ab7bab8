"""The EPP driver (RFC 5730-5734) against a session recorded from the RFCs' own examples
(tests/hosting/epp_session/README.md), served over real TLS on loopback with real RFC 5734 framing:
the client, then the ``epp`` registrar through the domain jobs. Malformed frames, wrong lengths,
non-XML and 2xxx answers end as clean job failures: the domain keeps what it had, never a 500."""

from __future__ import annotations

import struct
from datetime import date

import pytest

from apps.audit.models import AuditEvent
from apps.customers.models import Customer
from apps.domains import crypto, epp, registrars, services
from apps.domains.models import Domain, DomainSettings, DomainStatus, RegistrarStatus
from apps.domains.registrar_epp import EppRegistrar
from apps.jobs.models import Job, JobStatus
from apps.jobs.services import run_job
from apps.tenancy.roles import Role
from tests.conftest import client_for
from tests.console.test_admin import console, operator  # noqa: F401
from tests.hosting.epp_session.server import RFC_SESSION, EppTestServer, Raw, fixture, self_signed

D = "{urn:ietf:params:xml:ns:domain-1.0}"
E = "{urn:ietf:params:xml:ns:epp-1.0}"
C = "{urn:ietf:params:xml:ns:contact-1.0}"


@pytest.fixture
def serve(tmp_path):
    """``serve(**overrides)``: a server answering the RFC session, with some commands answered otherwise."""
    started = []

    def start(client_ca: str = "", greeting="greeting.xml", **overrides) -> EppTestServer:
        answers = {**RFC_SESSION, **{k.replace("_", ":"): v for k, v in overrides.items()}}
        server = EppTestServer(answers=answers, workdir=tmp_path, client_ca=client_ca, greeting=greeting).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def config(server: EppTestServer, **extra) -> epp.EppConfig:
    return epp.EppConfig(**{"host": "127.0.0.1", "port": server.port, "client_id": "ClientX", "password": "foo-BAR2",
                            "ca_pem": server.pem.cert, "timeout": 5, **extra})  # fmt: skip


# --- the client over real TLS ----------------------------------------------------------------------


def test_the_rfc_session_drives_the_client(serve):
    server = serve()
    with epp.EppClient(config(server)) as client:
        assert client.greeting.server_id == "Example EPP server epp.example.com"
        assert client.greeting.versions == ["1.0"]
        assert client.hello().server_id == "Example EPP server epp.example.com"
        assert client.domain_check(["example.com", "example.net"]) == {
            "example.com": (True, ""), "example.net": (False, "In use"), "example.org": (True, ""),
        }  # fmt: skip
        created = client.domain_create(
            "example.com", years=2, registrant="jd1234", contacts={"admin": "sh8013", "tech": "sh8013"},
            nameservers=["ns1.example.net", "ns2.example.net"], auth_info="2fooBAR",
        )  # fmt: skip
        assert created == (date(1999, 4, 3), date(2001, 4, 3))
        assert client.domain_renew("example.com", current_expiry=date(2000, 4, 3), years=5) == date(2005, 4, 3)
        info = client.domain_info("example.com")
        assert (info.name, info.roid, info.statuses, info.registrant) == (
            "example.com",
            "EXAMPLE1-REP",
            ["ok"],
            "jd1234",
        )
        assert info.nameservers == ["ns1.example.com", "ns1.example.net"]
        assert (info.created, info.expires, info.auth_info) == (date(1999, 4, 3), date(2005, 4, 3), "2fooBAR")
        assert client.domain_update("example.com", add_ns=["ns2.example.com"], rem_ns=["ns1.example.net"]).code == 1000
        assert client.domain_transfer_request("example.com", auth_info="2fooBAR", years=1).code == 1001
        assert client.contact_create("sh8013", name="John Doe", email="jdoe@example.com", city="Dulles",
                                     country="US", auth_info="2fooBAR") == "sh8013"  # fmt: skip
        assert client.host_create("ns1.example.com", addresses=["192.0.2.2", "1080::8:800:200C:417A"]).code == 1000
        sent = list(client.sent)
    assert server.commands == [
        "login", "hello", "domain:check", "domain:create", "domain:renew", "domain:info", "domain:update",
        "domain:transfer", "contact:create", "host:create", "logout",
    ]  # fmt: skip
    assert not server.errors
    # Every command had its own clTRID (and every answer echoed it, or the client would have refused it).
    assert len(set(sent)) == len(sent) == 9  # the commands before logout (hello has none)

    login = server.request("login")
    assert login.findtext(f"{E}command/{E}login/{E}clID") == "ClientX"
    assert login.findtext(f"{E}command/{E}login/{E}pw") == "foo-BAR2"
    assert login.findtext(f"{E}command/{E}login/{E}options/{E}version") == "1.0"
    # The RFC's greeting offers placeholder objects: the client asks for the ones it manages.
    assert [u.text for u in login.iter(f"{E}objURI")] == list(epp.OBJECTS)
    create = server.request("domain:create").find(f"{E}command/{E}create/{D}create")
    assert create.findtext(f"{D}period") == "2" and create.find(f"{D}period").get("unit") == "y"
    assert [h.text for h in create.iter(f"{D}hostObj")] == ["ns1.example.net", "ns2.example.net"]
    assert create.findtext(f"{D}registrant") == "jd1234"
    assert {c.get("type"): c.text for c in create.iter(f"{D}contact")} == {"admin": "sh8013", "tech": "sh8013"}
    assert create.findtext(f"{D}authInfo/{D}pw") == "2fooBAR"
    renew = server.request("domain:renew").find(f"{E}command/{E}renew/{D}renew")
    assert renew.findtext(f"{D}curExpDate") == "2000-04-03" and renew.findtext(f"{D}period") == "5"
    update = server.request("domain:update").find(f"{E}command/{E}update/{D}update")
    assert [h.text for h in update.iter(f"{D}hostObj")] == ["ns2.example.com", "ns1.example.net"]
    assert update.find(f"{D}add") is not None and update.find(f"{D}rem") is not None


def test_a_client_certificate_is_presented_when_configured(serve):
    client_pem = self_signed("ClientX")
    server = serve(client_ca=client_pem.cert)
    with epp.EppClient(config(server, cert_pem=client_pem.cert, key_pem=client_pem.key)) as client:
        assert client.domain_check(["example.com"])["example.com"][0] is True
    assert server.client_certs and dict(x[0] for x in server.client_certs[0]["subject"])["commonName"] == "ClientX"
    # Without it the registry refuses the handshake: configuration, not worth a retry.
    with pytest.raises(epp.EppError) as exc:
        epp.EppClient(config(server)).connect()
    assert not exc.value.retryable


def test_a_server_certificate_nobody_vouches_for_is_refused(serve):
    server = serve()
    with pytest.raises(epp.EppError) as exc:
        epp.EppClient(config(server, ca_pem=self_signed("someone-else").cert)).connect()
    assert "TLS" in exc.value.message and not exc.value.retryable


def test_nobody_listening_is_a_retryable_failure(serve):
    server = serve()
    port = server.port
    server.stop()
    with pytest.raises(epp.EppError) as exc:
        epp.EppClient(epp.EppConfig(host="127.0.0.1", port=port, client_id="x", password="y", timeout=2)).connect()
    assert exc.value.retryable


@pytest.mark.parametrize(
    ("answer", "code", "retryable", "text"),
    [
        ("error-2302.xml", 2302, False, "2302 Object exists"),
        ("error-2303.xml", 2303, False, "2303 Object does not exist"),
        ("error-2201.xml", 2201, False, "2201 Authorization error"),
        ("error-2400.xml", 2400, True, "2400 Command failed"),
        ("error-2005.xml", 2005, False, "2005 Parameter value syntax error (Invalid character found.)"),
    ],
)
def test_2xxx_answers_raise_with_the_servers_message(serve, answer, code, retryable, text):
    server = serve(domain_create=answer)
    with epp.EppClient(config(server)) as client, pytest.raises(epp.EppError) as exc:
        client.domain_create("example.com", years=1, registrant="jd1234", contacts={}, nameservers=[], auth_info="x")
    assert exc.value.result == code and exc.value.retryable is retryable
    assert exc.value.message == f"The registry refused: {text}"
    assert isinstance(exc.value, registrars.RegistrarError)


def test_a_contact_that_exists_already_is_the_one_asked_for(serve):
    server = serve(contact_create="error-2302.xml")
    with epp.EppClient(config(server)) as client:
        assert client.contact_create("mp123", name="A", email="a@example.com", city="X", country="NL",
                                     auth_info="pw") == "mp123"  # fmt: skip


def frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data) + 4) + data


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE epp [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<epp xmlns="urn:ietf:params:xml:ns:epp-1.0"><response><result code="1000"><msg>&b;</msg></result></response></epp>"""


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"\x00\x00\x00\x02", "announced 2 bytes"),  # shorter than its own header
        (b"\x00\x00\x00\x04", "announced 4 bytes"),  # an empty frame
        (struct.pack(">I", 64 * 1024 * 1024), "more than"),  # far past any EPP answer
        (struct.pack(">I", 1000) + b"<epp/>", "short of a frame"),  # longer than what comes
        (b"\x00\x00", "short of a frame"),  # a header cut short
        (frame(b"HTTP/1.1 400 Bad Request\r\n\r\n"), "not XML"),
        (frame(b"<html><body>maintenance</body></html>"), "not an EPP message"),
        (frame(b'<epp xmlns="urn:ietf:params:xml:ns:epp-1.0"><response/></epp>'), "no <result>"),
        (
            frame(b'<epp xmlns="urn:ietf:params:xml:ns:epp-1.0"><response><result code="OK"/></response></epp>'),
            "not a number",
        ),
        (
            frame(b'<epp xmlns="urn:ietf:params:xml:ns:epp-1.0"><response><result code="3000"/></response></epp>'),
            "not an EPP code",
        ),
        (frame(BILLION_LAUGHS), "DOCTYPE"),
        (frame(fixture("login.xml")), "is for 'ABC-12345'"),  # an answer to another command
    ],
)
def test_a_broken_stream_is_a_protocol_error(serve, raw, says):
    server = serve(domain_check=Raw(raw))
    with epp.EppClient(config(server)) as client, pytest.raises(epp.EppProtocolError) as exc:
        client.domain_check(["example.com"])
    assert says in exc.value.message and exc.value.retryable


def test_a_greeting_that_is_not_one_is_refused(serve):
    server = serve(greeting="login.xml")
    with pytest.raises(epp.EppProtocolError, match="did not greet"):
        epp.EppClient(config(server)).connect()


# --- the ``epp`` registrar through the domain jobs ---------------------------------------------------


def epp_tenant(fx, server: EppTestServer, **extra) -> DomainSettings:
    with fx.scope():
        return services.domain_settings_update(tenant=fx.tenant, data={
            "epp_host": "127.0.0.1", "epp_port": server.port, "epp_client_id": "ClientX", "epp_password": "foo-BAR2",
            "epp_ca_cert": server.pem.cert, "epp_tech_contact": "sh8013", **extra})  # fmt: skip


def registrant(fx) -> Customer:
    with fx.scope():
        return Customer.objects.create(tenant=fx.tenant, name="John Doe", email="jdoe@example.com", currency="USD",
                                       city="Dulles", country="US", address_line1="123 Example Dr.",
                                       postal_code="20166-6503", phone="+1.7035555555")  # fmt: skip


def register(fx, **extra) -> tuple[Domain, Job]:
    with fx.scope():
        domain = services.domain_create(tenant=fx.tenant, name="example.com", customer=registrant(fx), registrar="epp",
                                        nameservers=["ns1.example.net", "ns2.example.net"], **extra)  # fmt: skip
    return domain, domain.job


@pytest.mark.django_db
class TestEppRegistrar:
    def test_the_driver_is_registered_next_to_the_manual_one(self):
        assert {"manual", "epp"} <= set(registrars.names())
        assert isinstance(registrars.get("epp"), EppRegistrar)

    def test_the_password_is_stored_encrypted_and_never_audited(self, tenant_a, serve):
        conf = epp_tenant(tenant_a, serve())
        assert "foo-BAR2" not in conf.epp_password_encrypted
        assert crypto.decrypt(conf.epp_password_encrypted) == "foo-BAR2"
        event = AuditEvent.objects.filter(action="domain.settings.update").latest("created_at")
        assert "foo-BAR2" not in str(event.changes) and event.changes["secrets_changed"][1] == ["epp_password"]

    def test_registration_renewal_and_nameservers_over_epp(self, tenant_a, serve):
        server = serve()
        epp_tenant(tenant_a, server)
        domain, job = register(tenant_a)
        assert run_job(job.pk) == "succeeded"
        domain.refresh_from_db()
        assert server.commands == ["login", "domain:check", "contact:create", "domain:create", "logout"]
        assert (domain.registered_at, domain.expires_at) == (date(1999, 4, 3), date(2001, 4, 3))
        assert domain.registrar_state == RegistrarStatus.OK and domain.last_error == ""
        # The registry made it for this customer: ownership is proven.
        assert domain.status == DomainStatus.ACTIVE and domain.verified_at is not None
        assert domain.nameservers == ["ns1.example.net", "ns2.example.net"]
        sent_code = server.request("domain:create").findtext(f"{E}command/{E}create/{D}create/{D}authInfo/{D}pw")
        assert crypto.decrypt(domain.auth_info_encrypted) == sent_code
        contact = server.request("contact:create").find(f"{E}command/{E}create/{C}create")
        assert contact.findtext(f"{C}id") == f"mp{domain.customer.pk.hex[:12]}"
        assert contact.findtext(f"{C}postalInfo/{C}addr/{C}cc") == "US"
        create = server.request("domain:create").find(f"{E}command/{E}create/{D}create")
        # The registrant is the contact the registry answered (RFC 5733's sh8013); tech is the tenant's handle.
        assert create.findtext(f"{D}registrant") == "sh8013"
        assert {c.get("type"): c.text for c in create.iter(f"{D}contact")}["tech"] == "sh8013"

        with tenant_a.scope():
            renewed = services.domain_renew(domain=domain, years=1)
        assert run_job(renewed.job.pk) == "succeeded"
        domain.refresh_from_db()
        assert domain.expires_at == date(2005, 4, 3)
        assert server.request("domain:renew").findtext(f"{E}command/{E}renew/{D}renew/{D}curExpDate") == "2001-04-03"

        with tenant_a.scope():
            changed = services.domain_update(
                domain=domain, data={"nameservers": ["ns1.example.com", "ns2.example.com"]}
            )
        assert run_job(changed.job.pk) == "succeeded"
        update = server.request("domain:update").find(f"{E}command/{E}update/{D}update")
        assert [h.text for h in update.find(f"{D}add").iter(f"{D}hostObj")] == ["ns2.example.com"]
        assert [h.text for h in update.find(f"{D}rem").iter(f"{D}hostObj")] == ["ns1.example.net"]
        domain.refresh_from_db()
        assert domain.nameservers == ["ns1.example.com", "ns2.example.com"] and domain.pending_nameservers is None

    @pytest.mark.parametrize("answer", ["error-2302.xml", "error-2201.xml", "error-2005.xml"])
    def test_a_refusal_fails_the_job_at_once_and_writes_nothing(self, tenant_a, serve, answer):
        server = serve(domain_create=answer)
        epp_tenant(tenant_a, server)
        domain, job = register(tenant_a)
        assert run_job(job.pk) == "failed"
        job.refresh_from_db()
        domain.refresh_from_db()
        assert job.status == JobStatus.FAILED and job.attempts == 1
        code = answer[6:10]
        assert f"The registry refused: {code}" in job.last_error and f"{code}" in domain.last_error
        assert domain.registrar_state == RegistrarStatus.ERROR
        # Nothing of a half-done registration: no dates, no code, nameservers still only asked for.
        assert (domain.expires_at, domain.registered_at, domain.auth_info_encrypted) == (None, None, "")
        assert domain.nameservers == [] and domain.pending_nameservers == ["ns1.example.net", "ns2.example.net"]
        assert not AuditEvent.objects.filter(action="domain.register", object_id=str(domain.pk)).exists()

    @pytest.mark.parametrize("raw", [b"\x00\x00\x00\x02", struct.pack(">I", 900) + b"<epp", frame(b"not xml"),
                                     "error-2400.xml"])  # fmt: skip
    def test_a_broken_stream_or_registry_fault_is_retried_then_fails_cleanly(self, tenant_a, serve, raw, settings):
        server = serve(domain_create=raw if isinstance(raw, str) else Raw(raw))
        epp_tenant(tenant_a, server)
        domain, job = register(tenant_a)
        assert run_job(job.pk) == "pending"  # stored again, to run after its backoff
        domain.refresh_from_db()
        assert domain.registrar_state == RegistrarStatus.PENDING and domain.last_error.startswith("Retrying:")
        assert domain.expires_at is None
        # The last attempt gives up: the job fails, the domain says why and still holds nothing half-made.
        Job.all_tenants.filter(pk=job.pk).update(attempts=job.max_attempts - 1, run_after=job.created_at)
        assert run_job(job.pk) == "failed"
        domain.refresh_from_db()
        assert domain.registrar_state == RegistrarStatus.ERROR and domain.expires_at is None
        assert domain.last_error and not domain.last_error.startswith("Retrying:")

    def test_no_epp_account_is_a_clear_failure(self, tenant_a):
        domain, job = register(tenant_a)
        assert run_job(job.pk) == "failed"
        domain.refresh_from_db()
        assert "no EPP account" in domain.last_error and domain.registrar_state == RegistrarStatus.ERROR

    def test_through_the_api_a_refusal_is_never_a_500(self, tenant_a, serve, django_capture_on_commit_callbacks):
        epp_tenant(tenant_a, serve(domain_create="error-2302.xml"))
        customer = registrant(tenant_a)
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        with django_capture_on_commit_callbacks(execute=True):
            payload = {"name": "example.com", "registrar": "epp", "customer": str(customer.pk)}
            response = client.post("/api/v1/hosting/domains/", payload, format="json")
        assert response.status_code == 201, response.content
        assert Job.all_tenants.get(pk=response.json()["job"]["id"]).status == JobStatus.FAILED
        body = client.get(f"/api/v1/hosting/domains/{response.json()['id']}/").json()
        assert body["registrar_state"] == "error" and body["expires_at"] is None
        assert "2302 Object exists" in body["last_error"]


@pytest.mark.django_db
def test_operators_set_the_epp_account_in_the_admin(console, tenant_a, serve):  # noqa: F811
    """The settings page saves through the service: the password is write-only and encrypted, an
    empty password field keeps it, and the account then registers domains."""
    from django.urls import reverse

    from tests.console.test_admin import form_data

    server = serve()
    add = console.get(reverse("admin:domains_domainsettings_add"))
    data = {**form_data(add), "tenant": str(tenant_a.tenant.pk), "nameservers": "ns1.a.example\nns2.a.example",
            "registrar": "epp", "on_failed_registration": "retry", "epp_host": "127.0.0.1",
            "epp_port": str(server.port), "epp_client_id": "ClientX", "epp_password": "foo-BAR2",
            "epp_ca_cert": server.pem.cert}  # fmt: skip
    response = console.post(reverse("admin:domains_domainsettings_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    conf = DomainSettings.objects.get(tenant=tenant_a.tenant)
    assert crypto.decrypt(conf.epp_password_encrypted) == "foo-BAR2" and conf.nameservers == [
        "ns1.a.example",
        "ns2.a.example",
    ]
    change_url = reverse("admin:domains_domainsettings_change", args=[conf.pk])
    page = console.get(change_url)
    assert "foo-BAR2" not in page.content.decode()
    response = console.post(change_url, {**form_data(page), "epp_client_id": "ClientY"})
    assert response.status_code == 302
    conf.refresh_from_db()
    assert conf.epp_client_id == "ClientY" and crypto.decrypt(conf.epp_password_encrypted) == "foo-BAR2"
    event = AuditEvent.objects.filter(action="domain.settings.update").latest("created_at")
    assert event.via == "operator" and "foo-BAR2" not in str(event.changes)
