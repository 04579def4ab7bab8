"""Every value a node daemon reads is refused at the API by the rule the node applies
(agent/validate), and a bad value that got into the database anyway fails only its own object.

The hostile values are generated per artifact: each hostile fragment (control characters, line
breaks, comment and separator characters, quotes, spaces, pipes, escapes, a Cyrillic lookalike) is
spliced into a valid value at its start, middle and end, plus the artifact's own hostile cases
(``[ip]`` destinations, ``$INCLUDE``/``$ORIGIN``, huge numbers, system accounts). Each one is sent
through the API (400 naming the field, nothing stored, no job) AND through the node's own function
(refused the same way). The last tests insert bad rows behind the API and run the real daemons:
postmap, PowerDNS, named-checkzone, nginx.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import reverse

from agent import dns as agent_dns
from agent import mail as agent_mail
from agent.runtime import AgentError
from agent.web import validate_spec
from apps.dns import services as dns_services
from apps.dns.models import Record, Zone, ZoneStatus
from apps.jobs.models import Job
from apps.jobs.services import job_enqueue
from apps.mail import services as mail_services
from apps.mail.models import Alias, Mailbox, MailDomain, MailDomainStatus
from apps.tenancy.roles import Role
from apps.websites.models import Website, WebsiteStatus
from tests.conftest import client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401
from tests.hosting.test_dns import dns_node, records_url, zone_in, zones_url
from tests.hosting.test_mail import PASSWORD, aliases_url, boxes_url, domains_url, mail_domain_in, mail_node
from tests.mail_support import mail_node_root, mail_tmp  # noqa: F401
from tests.web_support import nginx_node, web_node_in, web_root  # noqa: F401

pytestmark = pytest.mark.django_db

LOOKALIKE = "\u0430"  # Cyrillic a
HOSTILE = ["\n", "\r", "\x00", "\t", "\x7f", "\x85", "\u2028", "#", ";", '"', "'", " ", "|", "$", "{", "}", "\\",
           "(", ")", "`", ",", "@", "[", "]", LOOKALIKE]  # fmt: skip
SEQ = itertools.count()  # a fresh name per call: one wrongly accepted value must not hide the next
HASH = "{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


def spliced(base: str, *extra, allowed: str = "", idna: bool = False) -> list:
    """``base`` with each hostile fragment at its start, middle and end (a space only in the middle:
    at either end it is trimmed), then ``extra``. ``allowed``: fragments the artifact may hold;
    ``idna``: names whose Unicode form becomes an A-label (the lookalike is then another valid name)."""
    out = []
    for frag in HOSTILE:
        if frag in allowed or (idna and frag == LOOKALIKE):
            continue
        mid = len(base) // 2
        out.append(base[:mid] + frag + base[mid:])
        if not frag.isspace():
            out += [frag + base, base + frag]
    return out + list(extra)


@pytest.fixture(autouse=True)
def light_crypto(settings):
    settings.MPANEL_DKIM_KEY_BITS = 1024
    settings.MPANEL_MAIL_ARGON2_MEMORY_KB = 8192


@dataclass
class Artifact:
    """One value a daemon reads: how the API takes it and how the node checks it."""

    name: str
    values: list
    api: Callable  # (client, fx, value) -> response
    stored: Callable  # () -> something that must not change
    node: Callable  # (value) -> None, raises when the node refuses it
    field: str = ""


# --- the node's side of each artifact --------------------------------------------------------


def node_mail(kind: str):
    def run(value):
        if kind == "domain":
            spec = {"domains": [value]}
        elif kind == "mailbox":
            spec = {"domains": ["ok.example"], "mailboxes": [{"address": f"{value}@ok.example", "password_hash": HASH}]}
        elif kind == "alias":
            spec = {"domains": ["ok.example"], "aliases": [{"source": f"{value}@ok.example",
                                                           "destinations": ["a@b.example"]}]}  # fmt: skip
        else:
            spec = {"domains": ["ok.example"], "aliases": [{"source": "fw@ok.example", "destinations": [value]}]}
        clean, rejected = agent_mail._entries(spec)
        if not rejected:
            raise AssertionError(f"the node took it: {clean}")
        served = clean["domains"] + [m["address"] for m in clean["mailboxes"]] + [a["source"] for a in clean["aliases"]]
        assert not any(value in s for s in served), clean

    return run


ZONE = "z.example."
SOA = "ns1.example.net. hostmaster.example.net. 2024010101 10800 3600 604800 3600"


def node_zone(spec: dict):
    with pytest.raises(AgentError) as refused:
        agent_dns._checked({"name": ZONE, "rrsets": [{"name": ZONE, "type": "SOA", "ttl": 3600, "records": [SOA]}],
                            **spec})  # fmt: skip
    assert refused.value.permanent


def node_record(rtype: str):
    return lambda value: node_zone({"rrsets": [
        {"name": ZONE, "type": "SOA", "ttl": 3600, "records": [SOA]},
        {"name": f"x.{ZONE}", "type": rtype, "ttl": 300, "records": [value]},
    ]})  # fmt: skip


def node_soa(position: int):
    def run(value):
        parts = SOA.split(" ")
        parts[position] = str(value) if position > 1 else f"{value}."
        node_zone({"rrsets": [{"name": ZONE, "type": "SOA", "ttl": 3600, "records": [" ".join(parts)]}]})

    return run


def node_site(key: str, wrap=lambda v: v):
    def run(value):
        spec = {"id": "wsite", "domains": ["shop.example.com"], "system_user": "shopuser", key: wrap(value)}
        with pytest.raises(AgentError) as refused:
            validate_spec(spec)
        assert refused.value.permanent

    return run


# --- the API's side --------------------------------------------------------------------------


def post(url_of: Callable, payload_of: Callable):
    return lambda client, fx, value: client.post(url_of(fx), payload_of(value), format="json")


def patch_zone(key):
    return lambda client, fx, value: client.patch(zones_url(the_zone(fx)), {key: value}, format="json")


def the_zone(fx):
    with fx.scope():
        return Zone.objects.filter(name="z.example").first() or zone_in(fx, "z.example")


def the_mail_domain(fx):
    return mail_domain_in(fx, "ok.example")


def snapshot_zone():
    return list(Zone.all_tenants.values_list("name", "serial", "soa_mname", "soa_rname", "soa_minimum",
                                             "soa_refresh", "default_ttl")), Record.all_tenants.count()  # fmt: skip


def site_payload(key, wrap=lambda v: v):
    return lambda value: {"primary_domain": f"shop{next(SEQ)}.example.com", key: wrap(value)}


def web_api(payload_of):
    def run(client, fx, value):
        web_node_in(fx)
        return client.post(reverse("website-list"), payload_of(value), format="json")

    return run


RECORD_BASES = {
    "A": "192.0.2.1",
    "AAAA": "2001:db8::1",
    "CNAME": "target.example.com.",
    "MX": "10 mx.example.com.",
    "SRV": "10 5 5060 sip.example.com.",
    "NS": "ns1.example.net.",
    "PTR": "host.example.com.",
}
QUOTED_HOSTILE = ['"v=spf1 -all" ; x', '"a" (', '"a" )', '"a"\n$INCLUDE /etc/passwd', '"unclosed', '"a"\x00',
                  '"a\nb"', '"a" \\;', '"a";"b"']  # fmt: skip

ARTIFACTS = [
    Artifact(
        "mail domain name",
        spliced("shop.example.com", "a;b.example", "a b.example", "*.x.example", "x_y.example", idna=True),
        post(lambda fx: domains_url(), lambda v: {"name": v}),
        lambda: MailDomain.all_tenants.count(),
        node_mail("domain"),
        field="name",
    ),
    Artifact(
        "mailbox local part",
        spliced("alice", "#dos", ".alice", "alice.", "al..ice", "-x", "x/y", "x:y", "\u0430dmin"),
        post(lambda fx: boxes_url(the_mail_domain(fx)), lambda v: {"local_part": v, "password": PASSWORD}),
        lambda: Mailbox.all_tenants.count(),
        node_mail("mailbox"),
        field="local_part",
    ),
    Artifact(
        "alias local part",
        spliced("sales", "#dos", "x/y", "x:y"),
        post(lambda fx: aliases_url(the_mail_domain(fx)), lambda v: {"local_part": v, "destinations": ["a@b.example"]}),
        lambda: Alias.all_tenants.count(),
        node_mail("alias"),
        field="local_part",
    ),
    Artifact(
        "alias destination",
        spliced(
            "bob@elsewhere.example",
            "x@[127.0.0.1]",
            "|x@y.example",
            "/tmp/x@y.example",
            ":include:/etc/x@y.example",
            "x@y",
            "@y.example",
            '"x"@y.example',
            "x@127.0.0.1",
            "x@y.example,z@w.example",
            idna=True,
        ),
        post(
            lambda fx: aliases_url(the_mail_domain(fx)), lambda v: {"local_part": f"fw{next(SEQ)}", "destinations": [v]}
        ),
        lambda: Alias.all_tenants.count(),
        node_mail("destination"),
        field="destinations",
    ),
    Artifact(
        "zone name",
        spliced("shop.example.com", "*.x.example", "x.example;", 'x".example', "a\\032b.example", idna=True),
        lambda client, fx, value: (dns_node(fx), client.post(zones_url(), {"name": value}, format="json"))[1],
        snapshot_zone,
        lambda v: node_zone({"name": v}),
        field="name",
    ),
    *[
        Artifact(
            f"{rtype} record content",
            # A name in record data may be Unicode (it is stored as its A-label): no lookalike case there.
            spliced(
                base,
                f"{base}\nx IN A 6.6.6.6",
                f"{base} ; x",
                f"{base}\n$INCLUDE /etc/passwd",
                f"$ORIGIN {base}",
                idna=rtype not in ("A", "AAAA"),
            ),
            lambda client, fx, value, rtype=rtype: client.post(
                records_url(the_zone(fx)), {"name": "x", "type": rtype, "content": value}, format="json"
            ),
            snapshot_zone,
            node_record(rtype),
            field="content",
        )
        for rtype, base in RECORD_BASES.items()
    ],
    Artifact(
        "TXT and CAA record content",
        [("TXT", v) for v in QUOTED_HOSTILE]
        + [("CAA", v.replace('"a"', '0 issue "a"')) for v in QUOTED_HOSTILE]
        + [("TXT", "plain\ntext"), ("TXT", "plain\x00text"), ("CAA", '0 issue "a" "b"'), ("CAA", '256 issue "a"')],
        lambda client, fx, value: client.post(
            records_url(the_zone(fx)), {"name": "x", "type": value[0], "content": value[1]}, format="json"
        ),
        snapshot_zone,
        lambda value: node_record(value[0])(value[1]),
        field="content",
    ),
    Artifact(
        "record name",
        spliced("www", "a.*.b", "x.other.example.", "a\\;b", idna=True),
        lambda client, fx, value: client.post(
            records_url(the_zone(fx)), {"name": value, "type": "A", "content": "192.0.2.1"}, format="json"
        ),
        snapshot_zone,
        lambda v: node_zone(
            {
                "rrsets": [
                    {"name": ZONE, "type": "SOA", "ttl": 3600, "records": [SOA]},
                    {"name": f"{v}.{ZONE}", "type": "A", "ttl": 1, "records": ["192.0.2.1"]},
                ]
            }
        ),
        field="name",
    ),
    Artifact(
        "SOA mname",
        spliced("ns1.example.net", 'ns1".example.net', idna=True),
        patch_zone("soa_mname"),
        snapshot_zone,
        node_soa(0),
        field="soa_mname",
    ),
    Artifact(
        "SOA rname",
        spliced("hostmaster.example.net", "john.doe@example.net", idna=True),
        patch_zone("soa_rname"),
        snapshot_zone,
        node_soa(1),
        field="soa_rname",
    ),
    *[
        Artifact(f"SOA {key}", [2**31, 2**40, 2**63], patch_zone(key), snapshot_zone, node_soa(position), field=key)
        for key, position in (("soa_refresh", 3), ("soa_retry", 4), ("soa_expire", 5), ("soa_minimum", 6))
    ],
    Artifact(
        "website hostname",
        spliced("shop.example.com", "x.example.com;evil", idna=True),
        web_api(lambda v: {"primary_domain": v}),
        lambda: (Website.all_tenants.count(), Job.all_tenants.count()),
        node_site("domains", lambda v: [v]),
        field="primary_domain",
    ),
    Artifact(
        "website document root",
        spliced("public/html", "../etc", "/abs", "a/../../b"),
        web_api(site_payload("document_root")),
        lambda: (Website.all_tenants.count(), Job.all_tenants.count()),
        node_site("document_root"),
        field="document_root",
    ),
    Artifact(
        "website error page",
        spliced("/errors/404.html"),
        web_api(site_payload("error_pages", lambda v: {"404": v})),
        lambda: (Website.all_tenants.count(), Job.all_tenants.count()),
        node_site("error_pages", lambda v: {"404": v}),
        field="error_pages",
    ),
    Artifact(
        "website redirect target",
        spliced(
            "https://shop.example.com/new?a=1",
            "http://x.example:99999/",
            "http://x.example:0/",
            "http://x.example:-1/",
            "http://x.example:8o/",
            "http://192.0.2.1/",
            "http://[::1]/",
            "javascript:alert(1)",
            "http://u@x.example/",
            allowed="()'@,",
            idna=True,
        ),
        web_api(site_payload("redirects", lambda v: [{"source": "/old", "target": v}])),
        lambda: (Website.all_tenants.count(), Job.all_tenants.count()),
        node_site("redirects", lambda v: [{"source": "/old", "target": v, "code": 301}]),
        field="redirects",
    ),
    Artifact(
        "website redirect source",
        spliced("/old-page"),
        web_api(site_payload("redirects", lambda v: [{"source": v, "target": "https://x.example/"}])),
        lambda: (Website.all_tenants.count(), Job.all_tenants.count()),
        node_site("redirects", lambda v: [{"source": v, "target": "https://x.example/", "code": 301}]),
        field="redirects",
    ),
    Artifact(
        "website system user",
        spliced(
            "shopuser",
            "root",
            "www-data",
            "daemon",
            "nobody",
            "postfix",
            "mysql",
            "systemd-evil",
            "Root",
            "0day",
            "a" * 33,
        ),
        web_api(site_payload("system_user")),
        lambda: (Website.all_tenants.count(), Job.all_tenants.count()),
        node_site("system_user"),
        field="system_user",
    ),
    Artifact(
        "PHP version",
        spliced("8.2"),
        web_api(site_payload("php_version")),
        lambda: (Website.all_tenants.count(), Job.all_tenants.count()),
        node_site("php_version"),
        field="php_version",
    ),
]


@pytest.mark.parametrize("artifact", ARTIFACTS, ids=lambda a: a.name)
def test_the_api_refuses_every_hostile_value_with_a_400_and_stores_nothing(tenant_a, artifact, monkeypatch):
    from apps.jobs import services as job_services

    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    mail_node(tenant_a)
    the_zone(tenant_a)
    the_mail_domain(tenant_a)
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    before, jobs = artifact.stored(), Job.all_tenants.count()
    wrong = []
    for value in artifact.values:
        response = artifact.api(client, tenant_a, value)
        body = response.content.decode(errors="replace")
        if response.status_code != 400 or (artifact.field and artifact.field not in response.json()):
            wrong.append((value, response.status_code, body[:200]))
    assert not wrong, f"{len(wrong)} of {len(artifact.values)} not refused:\n" + "\n".join(map(repr, wrong))
    assert artifact.stored() == before and Job.all_tenants.count() == jobs


@pytest.mark.parametrize("artifact", ARTIFACTS, ids=lambda a: a.name)
def test_the_node_refuses_the_same_values(artifact):
    taken = []
    for value in artifact.values:
        try:
            artifact.node(value)
        except (pytest.fail.Exception, AssertionError) as exc:
            taken.append((value, str(exc)[:200]))
    assert not taken, f"{len(taken)} of {len(artifact.values)} taken by the node:\n" + "\n".join(map(repr, taken))


# --- master files: nothing silently left out ------------------------------------------------------

BAD_FILES = {
    "$ORIGIN of another name": "$ORIGIN other.example.\nwww 300 IN A 192.0.2.1\n",
    "a record outside the zone": "www.other.example. 300 IN A 192.0.2.1\n",
    "$INCLUDE": "$INCLUDE /etc/passwd\n",
    "$GENERATE": "$GENERATE 1-3 host$ A 192.0.2.$\n",
    "an escaped name": "a\\;b 300 IN A 192.0.2.1\n",
    "SOA timers past 31 bits": "@ 300 IN SOA ns1.x. h.x. 1 4294967295 3600 604800 3600\n",
    "a name in data with an escape": "www 300 IN CNAME a\\032b.example.\n",
}


@pytest.mark.parametrize("text", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_an_import_that_would_lose_records_is_a_400_naming_the_line(tenant_a, text, monkeypatch):
    from apps.jobs import services as job_services

    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    zone = the_zone(tenant_a)
    before, jobs = snapshot_zone(), Job.all_tenants.count()
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = client.post(zones_url(zone, "import"), {"zone_file": "x 300 IN A 192.0.2.9\n" + text}, format="json")
    assert response.status_code == 400, response.content
    assert "zone_file" in response.json()
    assert snapshot_zone() == before and Job.all_tenants.count() == jobs
    with tenant_a.scope():  # a new zone from the same file: refused as well, nothing made
        response = client.post(zones_url(), {"name": "fresh.example", "zone_file": text}, format="json")
    assert response.status_code == 400 and not Zone.all_tenants.filter(name="fresh.example").exists()


def test_out_of_zone_errors_name_the_line(tenant_a, monkeypatch):
    from apps.jobs import services as job_services

    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    url = zones_url(the_zone(tenant_a), "import")
    text = "ok 300 IN A 192.0.2.1\nwww.other.example. 300 IN A 192.0.2.2\n"
    response = client.post(url, {"zone_file": text}, format="json")
    assert response.status_code == 400
    assert response.json()["zone_file"] == [
        "Not a valid zone file: <zone file>:2: www.other.example. is outside the zone z.example."
    ]
    text = "ok 300 IN A 192.0.2.1\n$ORIGIN other.example.\nwww 300 IN A 192.0.2.2\n"
    response = client.post(url, {"zone_file": text}, format="json")
    assert response.status_code == 400
    assert "$ORIGIN other.example. is outside the zone z.example." in response.json()["zone_file"][0]


# --- a bad row behind the API fails only its own object on the real daemons ---------------------


def postmap_q(root, key: str, name: str) -> str:
    found = subprocess.run(["postmap", "-q", key, f"hash:{root / 'mail' / name}"], capture_output=True, text=True)
    return found.stdout.strip()


def test_a_bad_mail_row_fails_only_its_own_domain_and_postfix_serves_everyone_else(
    tenant_a,
    tenant_b,
    mail_node_root,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        a = mail_domain_in(tenant_a, "a-mail.example")
        with tenant_a.scope():
            mail_services.mailbox_create(mail_domain=a, local_part="ann", password=PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        b = mail_domain_in(tenant_b, "b-mail.example")
        with tenant_b.scope():
            mail_services.mailbox_create(mail_domain=b, local_part="bob", password=PASSWORD)
            mail_services.alias_create(mail_domain=b, local_part="sales", destinations=["bob@b-mail.example"])
    # Rows the API refuses, put straight into the database (a bug, an old row, a restore).
    with tenant_a.scope():
        Mailbox.objects.create(tenant=tenant_a.tenant, mail_domain=a, local_part="#dos", password_hash=HASH)
        Alias.objects.create(tenant=tenant_a.tenant, mail_domain=a, local_part="pipe",
                             destinations=["|/bin/sh@x.example", "x@[127.0.0.1]"])  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
        mail_services._sync(MailDomain.objects.get(pk=a.pk), None)
    a = MailDomain.all_tenants.get(pk=a.pk)
    assert a.status == MailDomainStatus.ERROR
    assert "'#dos@a-mail.example' refused" in a.last_error and "pipe@a-mail.example" in a.last_error
    # Everything else is served: the tenant's own good mailbox, and the other tenant's mail.
    assert postmap_q(mail_node_root, "ann@a-mail.example", "virtual_mailboxes") == "a-mail.example/ann/"
    assert postmap_q(mail_node_root, "bob@b-mail.example", "virtual_mailboxes") == "b-mail.example/bob/"
    assert postmap_q(mail_node_root, "sales@b-mail.example", "virtual_aliases") == "bob@b-mail.example"
    assert postmap_q(mail_node_root, "#dos@a-mail.example", "virtual_mailboxes") == ""
    assert "#dos" not in (mail_node_root / "mail" / "virtual_mailboxes").read_text()
    assert "|" not in (mail_node_root / "mail" / "virtual_aliases").read_text()
    # The other tenant's next change goes through and leaves its domain active.
    with django_capture_on_commit_callbacks(execute=True), tenant_b.scope():
        mail_services.mailbox_create(mail_domain=b, local_part="carol", password=PASSWORD)
    assert MailDomain.all_tenants.get(pk=b.pk).status == MailDomainStatus.ACTIVE
    assert postmap_q(mail_node_root, "carol@b-mail.example", "virtual_mailboxes") == "b-mail.example/carol/"
    assert {line.split(":")[0] for line in (mail_node_root / "mail" / "passwd").read_text().splitlines()} == {
        "ann@a-mail.example", "bob@b-mail.example", "carol@b-mail.example"}  # fmt: skip
    # Once the bad rows are gone, the next sync clears the error.
    with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
        Mailbox.objects.filter(local_part="#dos").delete()
        Alias.objects.filter(local_part="pipe").delete()
        mail_services._sync(a, None)
    assert MailDomain.all_tenants.get(pk=a.pk).status == MailDomainStatus.ACTIVE


def test_a_node_part_written_before_these_rules_cannot_break_the_maps(tmp_path):
    """A fragment already on disk with a bad entry (written by an older agent) is left out of the
    maps; it is not reported to another node, whose own entries are all served."""
    fragments = tmp_path / "mail" / "nodes"
    fragments.mkdir(parents=True)
    old = "00000000-0000-0000-0000-000000000001"
    (fragments / f"{old}.json").write_text(json.dumps({
        "node": old, "domains": ["old.example", "b-mail.example"],
        "mailboxes": [{"address": "#dos@old.example", "password_hash": HASH},
                      {"address": "ok@old.example", "password_hash": HASH}],
        "aliases": [{"source": "x@old.example", "destinations": ["|cat@x.example"]}],
    }))  # fmt: skip
    mine = "00000000-0000-0000-0000-000000000002"
    spec = {"node": mine, "domains": ["b-mail.example", "c.example"],
            "mailboxes": [{"address": "bob@c.example", "password_hash": HASH}]}  # fmt: skip
    result = agent_mail.mail_sync(tmp_path, spec)
    assert postmap_q(tmp_path, "ok@old.example", "virtual_mailboxes") == "old.example/ok/"
    assert postmap_q(tmp_path, "bob@c.example", "virtual_mailboxes") == "c.example/bob/"
    assert "#dos" not in (tmp_path / "mail" / "virtual_mailboxes").read_text()
    assert postmap_q(tmp_path, "x@old.example", "virtual_aliases") == ""
    # b-mail.example is the older part's: this node's claim on it is what is refused, and said.
    assert [(r["kind"], r["key"]) for r in result["rejected"]] == [("domain", "b-mail.example")]


def test_a_bad_record_fails_only_its_own_zone_and_powerdns_serves_the_others(
    tenant_a,
    tenant_b,
    pdns_node_env,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    pdns = pdns_node_env
    with django_capture_on_commit_callbacks(execute=True):
        a = zone_in(tenant_a, "iso-a.example")
        b = zone_in(tenant_b, "iso-b.example")
        with tenant_b.scope():
            dns_services.record_create(zone=b, name="www", type="A", content="192.0.2.7")
        with tenant_a.scope():
            dns_services.record_create(zone=a, name="www", type="A", content="192.0.2.8")
    served = pdns.serial("iso-a.example.")
    assert pdns.ask("www.iso-b.example.", "A") == ["192.0.2.7"] and served
    # What the API refuses (a comment, a second line), put straight into the database.
    with tenant_a.scope():
        Record.objects.create(tenant=tenant_a.tenant, zone=a, name="x", type="A", content="192.0.2.1 ; x")
        Record.objects.create(tenant=tenant_a.tenant, zone=a, name="y", type="CNAME",
                              content="t.example.\n$INCLUDE /etc/passwd")  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
        job_enqueue(tenant=tenant_a.tenant, type="dns.zone.sync", payload={"zone": str(a.pk)}, obj=a)
    a = Zone.all_tenants.get(pk=a.pk)
    assert a.status == ZoneStatus.ERROR
    assert "x.iso-a.example. A" in a.last_error or "y.iso-a.example. CNAME" in a.last_error, a.last_error
    # Nothing of it reached PowerDNS: the zone keeps what it served; the other tenant's is untouched.
    assert pdns.serial("iso-a.example.") == served
    assert pdns.ask("x.iso-a.example.", "A") == [] and pdns.ask("www.iso-a.example.", "A") == ["192.0.2.8"]
    assert pdns.ask("www.iso-b.example.", "A") == ["192.0.2.7"]
    with django_capture_on_commit_callbacks(execute=True), tenant_b.scope():
        dns_services.record_create(zone=b, name="api", type="A", content="192.0.2.9")
    assert Zone.all_tenants.get(pk=b.pk).status == ZoneStatus.ACTIVE
    assert pdns.ask("api.iso-b.example.", "A") == ["192.0.2.9"]


def test_bind_refuses_a_bad_zone_before_named_checkzone_and_keeps_the_others(tmp_path):
    from agent.dns import Bind

    bind = Bind(tmp_path)
    soa = {"name": "b.example.", "type": "SOA", "ttl": 3600, "records": [SOA]}
    good = {"name": "b.example.", "rrsets": [soa, {"name": "b.example.", "type": "NS", "ttl": 3600,
                                                    "records": ["ns1.example.net."]}]}  # fmt: skip
    assert bind.zone_ensure(good)["changed"] == 1
    for content in ("192.0.2.1 ; x", "192.0.2.1\nevil 1 IN A 6.6.6.6", "192.0.2.1 (", "$INCLUDE /etc/passwd"):
        bad = {"name": "a.example.", "rrsets": [{**soa, "name": "a.example."},
               {"name": "x.a.example.", "type": "A", "ttl": 1, "records": [content]}]}  # fmt: skip
        with pytest.raises(AgentError) as refused:
            bind.zone_ensure(bad)
        assert refused.value.permanent and "x.a.example. A" in refused.value.message
    assert not (bind.dir / "a.example.zone").exists()
    assert "a.example" not in (bind.dir / "zones.conf").read_text()
    checked = subprocess.run(["named-checkzone", "b.example", str(bind.dir / "b.example.zone")], capture_output=True)
    assert checked.returncode == 0, checked.stdout
    assert subprocess.run(["named-checkconf", str(bind.dir / "zones.conf")], capture_output=True).returncode == 0


def test_a_bad_vhost_value_fails_only_its_own_site_and_nginx_serves_the_others(
    tenant_a,
    tenant_b,
    nginx_node,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    web_node_in(tenant_a, hostname="web-a")
    web_node_in(tenant_b, hostname="web-b")
    sites = {}
    for fx, host in ((tenant_a, "iso-a.example.com"), (tenant_b, "iso-b.example.com")):
        client = client_for(fx.users[Role.ADMIN], fx.tenant)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reverse("website-list"), {"primary_domain": host, "https": False}, format="json")
        assert response.status_code == 201, response.content
        sites[host] = Website.all_tenants.get(pk=response.json()["id"])
        assert sites[host].status == WebsiteStatus.ACTIVE, sites[host].last_error
        assert nginx_node.wait_until(host, 200)[0] == 200
    a = sites["iso-a.example.com"]
    vhost = (nginx_node.root / "web" / "sites" / f"{a.site_id}.conf").read_text()
    # Values the API refuses, put straight into the database: a directive smuggled in a redirect.
    evil = "http://x.example/;} server { listen 1; } #"
    Website.all_tenants.filter(pk=a.pk).update(redirects=[{"source": "/x", "target": evil, "code": 301}])
    with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
        job_enqueue(tenant=tenant_a.tenant, type="website.update", payload={"website": str(a.pk)}, obj=a)
    a = Website.all_tenants.get(pk=a.pk)
    assert a.status == WebsiteStatus.ERROR and "redirect" in a.last_error, a.last_error
    assert (nginx_node.root / "web" / "sites" / f"{a.site_id}.conf").read_text() == vhost  # untouched
    assert subprocess.run(["nginx", "-t", "-q", "-c", str(nginx_node.conf)], capture_output=True).returncode == 0
    # wait_until: nginx's workers may be between generations from the earlier reloads (a real
    # break still times out on its 404).
    assert nginx_node.wait_until("iso-b.example.com", 200)[0] == 200
    assert nginx_node.wait_until("iso-a.example.com", 200)[0] == 200  # the site keeps its last good vhost


def test_a_system_user_is_one_tenants_on_this_machine(tenant_a, tenant_b, monkeypatch):
    from apps.jobs import services as job_services

    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    web_node_in(tenant_a, hostname="web-a")
    web_node_in(tenant_b, hostname="web-b")
    url = reverse("website-list")
    first = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    assert (
        first.post(url, {"primary_domain": "u1.example.com", "system_user": "shop"}, format="json").status_code == 201
    )
    second = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
    response = second.post(url, {"primary_domain": "u2.example.com", "system_user": "shop"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "system_user_taken"
    assert not Website.all_tenants.filter(primary_domain="u2.example.com").exists()
    response = second.post(url, {"primary_domain": "u2.example.com", "system_user": "shop2"}, format="json")
    assert response.status_code == 201
