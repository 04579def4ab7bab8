"""Email: mail domains, mailboxes and aliases through the API; Dovecot-compatible hashes checked by
`doveadm pw -t`; Postfix maps compiled and read back with `postmap`; an IMAP login against a real
Dovecot; DKIM, SPF and DMARC published into our zone and answered by PowerDNS."""

from __future__ import annotations

import base64
import imaplib
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from django.urls import reverse

from apps.jobs import services as job_services
from apps.mail import services
from apps.mail.api import AliasViewSet, MailboxViewSet, MailDomainViewSet
from apps.mail.models import Mailbox, MailDomain, MailDomainStatus
from apps.nodes.models import Node
from apps.tenancy.roles import Role

from .api_mixin import ApiTestCase
from .conftest import client_for
from .dns_support import pdns_node_env, powerdns  # noqa: F401
from .mail_support import dovecot, mail_node_root, mail_tmp  # noqa: F401
from .test_dns import dns_node, zones_url

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def light_crypto(settings):
    """Smaller keys and hashes keep the suite fast; production uses 2048-bit DKIM and 64 MiB Argon2."""
    settings.MPANEL_DKIM_KEY_BITS = 1024
    settings.MPANEL_MAIL_ARGON2_MEMORY_KB = 8192


@pytest.fixture
def no_dispatch(monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


def mail_node(fx, hostname="mail-1") -> Node:
    with fx.scope():
        node = Node.objects.filter(hostname=hostname).first()
        return node or Node.objects.create(
            tenant=fx.tenant, hostname=hostname, roles=["mail"], vcpu=1, memory_mb=1024, disk_gb=10, max_pods=0
        )


def mail_domain_in(fx, name="mail.example") -> MailDomain:
    with fx.scope():
        found = MailDomain.objects.filter(name=name).first()
        return found or services.mail_domain_create(tenant=fx.tenant, name=name, node=mail_node(fx))


def domains_url(obj=None):
    return reverse("mail-domain-detail", kwargs={"pk": obj.pk}) if obj else reverse("mail-domain-list")


def boxes_url(domain, box=None):
    if box is None:
        return reverse("mailbox-list", kwargs={"domain_pk": domain.pk})
    return reverse("mailbox-detail", kwargs={"domain_pk": domain.pk, "pk": box.pk})


def aliases_url(domain):
    return reverse("mail-alias-list", kwargs={"domain_pk": domain.pk})


ROLES = {
    "list": Role.MEMBER,
    "retrieve": Role.MEMBER,
    "create": Role.ADMIN,
    "update": Role.ADMIN,
    "partial_update": Role.ADMIN,
    "destroy": Role.ADMIN,
}


@pytest.mark.usefixtures("no_dispatch")
class TestMailDomainApi(ApiTestCase):
    viewset = MailDomainViewSet
    basename = "mail-domain"
    roles = ROLES

    def make(self, fx, seq):
        return services.mail_domain_create(tenant=fx.tenant, name=f"m{seq}.example", node=mail_node(fx))

    def create_payload(self, fx, seq):
        mail_node(fx)
        return {"name": f"new{seq}.example"}

    def update_payload(self, fx, obj, seq):
        return {"catch_all": f"all{seq}@elsewhere.example"}


@pytest.mark.usefixtures("no_dispatch")
class TestMailboxApi(ApiTestCase):
    viewset = MailboxViewSet
    basename = "mailbox"
    roles = ROLES

    def url_kwargs(self, fx):
        return {"domain_pk": str(mail_domain_in(fx).pk)}

    def make(self, fx, seq):
        return services.mailbox_create(mail_domain=mail_domain_in(fx), local_part=f"user{seq}", password=PASSWORD)

    def create_payload(self, fx, seq):
        return {"local_part": f"new{seq}", "password": PASSWORD, "quota_mb": 100}

    def update_payload(self, fx, obj, seq):
        return {"quota_mb": 200 + seq, "enabled": True}


@pytest.mark.usefixtures("no_dispatch")
class TestAliasApi(ApiTestCase):
    viewset = AliasViewSet
    basename = "mail-alias"
    roles = ROLES

    def url_kwargs(self, fx):
        return {"domain_pk": str(mail_domain_in(fx).pk)}

    def make(self, fx, seq):
        return services.alias_create(mail_domain=mail_domain_in(fx), local_part=f"a{seq}",
                                     destinations=["x@elsewhere.example"])  # fmt: skip

    def create_payload(self, fx, seq):
        return {"local_part": f"new{seq}", "destinations": ["y@elsewhere.example", "z@other.example"]}

    def update_payload(self, fx, obj, seq):
        return {"destinations": [f"w{seq}@elsewhere.example"]}


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch")
class TestRules:
    def test_password_is_only_a_dovecot_hash_checked_by_doveadm(self, tenant_a):
        domain = mail_domain_in(tenant_a)
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = client.post(boxes_url(domain), {"local_part": "Alice", "password": PASSWORD}, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["address"] == "alice@mail.example" and "password" not in body and "password_hash" not in body
        stored = Mailbox.all_tenants.get(pk=body["id"]).password_hash
        assert stored.startswith("{ARGON2ID}$argon2id$") and PASSWORD not in stored
        ok = subprocess.run(["doveadm", "pw", "-t", stored, "-p", PASSWORD], capture_output=True, text=True)
        assert ok.returncode == 0 and "(verified)" in ok.stdout, ok.stderr
        bad = subprocess.run(["doveadm", "pw", "-t", stored, "-p", "wrong password"], capture_output=True)
        assert bad.returncode != 0

    def test_bad_input_is_400(self, tenant_a):
        domain = mail_domain_in(tenant_a)
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        services_ok = client.post(aliases_url(domain), {"local_part": "info", "destinations": ["a@b.example"]},
                                  format="json")  # fmt: skip
        assert services_ok.status_code == 201
        cases = [
            (boxes_url(domain), {"local_part": "info", "password": PASSWORD}),  # taken by the alias
            (boxes_url(domain), {"local_part": "bob", "password": "short"}),
            (boxes_url(domain), {"local_part": "bad local", "password": PASSWORD}),
            (aliases_url(domain), {"local_part": "x", "destinations": ["not-an-address"]}),
            (aliases_url(domain), {"local_part": "y", "destinations": []}),
            (domains_url(), {"name": "-bad.example"}),
        ]
        for url, payload in cases:
            response = client.post(url, payload, format="json")
            assert response.status_code == 400, (payload, response.content)
        response = client.patch(domains_url(domain), {"catch_all": "nobody"}, format="json")
        assert response.status_code == 400


@pytest.mark.django_db
def test_node_renders_maps_and_imap_login_works(tenant_a, dovecot, mail_node_root, django_capture_on_commit_callbacks):  # noqa: F811
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    mail_node(tenant_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(domains_url(), {"name": "inbox.example", "catch_all": "all@inbox.example"},
                               format="json")  # fmt: skip
        assert response.status_code == 201, response.content
        domain = MailDomain.all_tenants.get(pk=response.json()["id"])
        box = client.post(boxes_url(domain), {"local_part": "alice", "password": PASSWORD}, format="json")
        assert box.status_code == 201
        client.post(aliases_url(domain), {"local_part": "sales", "destinations": ["alice@inbox.example",
                    "boss@elsewhere.example"]}, format="json")  # fmt: skip
    assert MailDomain.all_tenants.get(pk=domain.pk).status == MailDomainStatus.ACTIVE

    maps = mail_node_root / "mail"

    def query(key, name):
        return subprocess.run(
            ["postmap", "-q", key, f"hash:{maps / name}"], capture_output=True, text=True
        ).stdout.strip()

    assert query("inbox.example", "virtual_domains") == "OK"
    assert query("alice@inbox.example", "virtual_mailboxes") == "inbox.example/alice/"
    assert query("sales@inbox.example", "virtual_aliases") == "alice@inbox.example,boss@elsewhere.example"
    assert query("@inbox.example", "virtual_aliases") == "all@inbox.example"

    imap = imaplib.IMAP4("127.0.0.1", dovecot)
    assert imap.login("alice@inbox.example", PASSWORD)[0] == "OK"
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    imap = imaplib.IMAP4("127.0.0.1", dovecot)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login("alice@inbox.example", "wrong password!")
    imap.shutdown()

    # Disabled: the node drops the login at the next push.
    box_obj = Mailbox.all_tenants.get(pk=box.json()["id"])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.patch(boxes_url(domain, box_obj), {"enabled": False}, format="json").status_code == 200
    assert query("alice@inbox.example", "virtual_mailboxes") == ""
    imap = imaplib.IMAP4("127.0.0.1", dovecot)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login("alice@inbox.example", PASSWORD)
    imap.shutdown()


@pytest.mark.django_db
def test_dkim_spf_dmarc_published_into_our_zone(tenant_a, pdns_node_env, mail_node_root,  # noqa: F811
                                                 django_capture_on_commit_callbacks):  # fmt: skip
    pdns = pdns_node_env
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    dns_node(tenant_a)
    mail_node(tenant_a)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(zones_url(), {"name": "signed.example"}, format="json").status_code == 201
        response = client.post(domains_url(), {"name": "signed.example"}, format="json")
    assert response.status_code == 201, response.content
    domain = MailDomain.all_tenants.get(pk=response.json()["id"])
    assert response.json()["dkim"]["name"] == "mp1._domainkey.signed.example."
    assert "dkim_secret_pem" not in response.json()

    assert pdns.ask("signed.example.", "MX") == ["10 mail.mpanel.invalid."]
    txt = pdns.ask("signed.example.", "TXT")
    assert txt == ['"v=spf1 mx -all"']
    assert pdns.ask("_dmarc.signed.example.", "TXT") == ['"v=DMARC1; p=quarantine"']
    dkim = pdns.ask("mp1._domainkey.signed.example.", "TXT")[0]
    joined = "".join(part.strip('"') for part in dkim.split('" "'))
    assert joined.startswith("v=DKIM1; k=rsa; p=")
    public = serialization.load_der_public_key(base64.b64decode(joined.split("p=", 1)[1]))
    # The published key verifies what the stored private key signs.
    secret = serialization.load_pem_private_key(domain.dkim_secret_pem.encode(), password=None)
    signature = secret.sign(b"message", padding.PKCS1v15(), hashes.SHA256())
    public.verify(signature, b"message", padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.django_db
def test_two_tenants_on_this_machine_keep_their_own_mail(tenant_a, tenant_b, mail_node_root,  # noqa: F811
                                                          django_capture_on_commit_callbacks):  # fmt: skip
    """Every local node is this machine: each node's part is kept apart and the maps hold both."""
    with django_capture_on_commit_callbacks(execute=True):
        a = mail_domain_in(tenant_a, "a-mail.example")
        with tenant_a.scope():
            services.mailbox_create(mail_domain=a, local_part="ann", password=PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        b = mail_domain_in(tenant_b, "b-mail.example")
        with tenant_b.scope():
            services.mailbox_create(mail_domain=b, local_part="bob", password=PASSWORD)
    maps = mail_node_root / "mail"
    for key in ("ann@a-mail.example", "bob@b-mail.example"):
        found = subprocess.run(["postmap", "-q", key, f"hash:{maps / 'virtual_mailboxes'}"], capture_output=True)
        assert found.returncode == 0, key
    assert {line.split(":")[0] for line in (maps / "passwd").read_text().splitlines()} == {
        "ann@a-mail.example",
        "bob@b-mail.example",
    }
    mail_node(tenant_b)
    client = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
    response = client.post(domains_url(), {"name": "a-mail.example"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "name_taken"
