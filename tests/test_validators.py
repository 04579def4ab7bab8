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
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import reverse

from agent import dns as agent_dns
from agent import mail as agent_mail
from agent.runtime import AgentError
from agent.web import validate_spec
from apps.dns.models import Record, Zone
from apps.jobs.models import Job
from apps.mail.models import Alias, Mailbox, MailDomain
from apps.tenancy.roles import Role
from apps.websites.models import Website

from .conftest import client_for
from .dns_support import pdns_node_env, powerdns  # noqa: F401
from .mail_support import mail_node_root, mail_tmp  # noqa: F401
from .test_dns import dns_node, records_url, zone_in, zones_url
from .test_mail import PASSWORD, aliases_url, boxes_url, domains_url, mail_domain_in, mail_node
from .web_support import nginx_node, web_node_in, web_root  # noqa: F401

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
