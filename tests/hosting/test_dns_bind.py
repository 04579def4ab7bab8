"""BIND: every zone we export passes BIND's own `named-checkzone`, and the `bind` DNS backend writes
zone files (checked by `named-checkzone`) and their `zones.conf` (checked by `named-checkconf`), and
tells a real named about them through rndc."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess

import dns.message
import dns.query
import dns.rcode
import pytest

from agent.dns import Bind
from agent.runtime import AgentError
from apps.dns.models import Zone, ZoneStatus
from apps.tenancy.roles import Role
from tests.conftest import client_for, wait_for
from tests.dns_support import free_port
from tests.hosting.test_dns import dns_node, records_url, zones_url

RECORDS = [
    {"name": "@", "type": "A", "content": "192.0.2.1"},
    {"name": "@", "type": "AAAA", "content": "2001:db8::1"},
    {"name": "www", "type": "CNAME", "content": "@"},
    {"name": "@", "type": "MX", "content": "10 mx.elsewhere.example."},
    {"name": "@", "type": "MX", "content": "20 mx2"},
    {"name": "mx2", "type": "A", "content": "192.0.2.2"},
    {"name": "@", "type": "TXT", "content": "v=spf1 mx -all"},
    {"name": "long", "type": "TXT", "content": "x" * 600},  # split into 255-byte strings
    {"name": "quoted", "type": "TXT", "content": '"say \\"hi\\"" "two; strings"'},
    {"name": "_sip._tcp", "type": "SRV", "content": "10 60 5060 sip.elsewhere.example."},
    {"name": "@", "type": "CAA", "content": '0 issue "letsencrypt.org"'},
    {"name": "sub", "type": "NS", "content": "ns1.sub"},  # a delegation with its glue
    {"name": "ns1.sub", "type": "A", "content": "192.0.2.53"},
    {"name": "1", "type": "PTR", "content": "host.elsewhere.example."},
    {"name": "*.wild", "type": "A", "content": "192.0.2.9", "ttl": 60},
]


@pytest.fixture
def checkzone():
    if shutil.which("named-checkzone") is None or shutil.which("named-checkconf") is None:
        pytest.fail("bind9-utils (named-checkzone, named-checkconf) is needed: run the tests with `make test`")


def named_checkzone(name: str, path) -> subprocess.CompletedProcess:
    return subprocess.run(["named-checkzone", name, str(path)], capture_output=True, text=True)


def _zone(client, payload) -> Zone:
    response = client.post(zones_url(), payload, format="json")
    assert response.status_code == 201, response.content
    return Zone.all_tenants.get(pk=response.json()["id"])


@pytest.mark.django_db
@pytest.mark.usefixtures("checkzone")
def test_every_exported_zone_passes_named_checkzone(tenant_a, tmp_path, monkeypatch):
    from apps.jobs import services as job_services

    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    dns_node(tenant_a)
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    full = _zone(client, {"name": "every-type.example", "default_ttl": 600})
    for record in RECORDS:
        response = client.post(records_url(full), record, format="json")
        assert response.status_code == 201, (record, response.content)
    zones = [
        full,
        _zone(client, {"name": "tpl.example", "template": "website-mail",
                       "template_vars": {"ipv4": "192.0.2.7", "ipv6": "2001:db8::7", "mail_host": "mx.tpl.example"}}),
        _zone(client, {"name": "bücher.example", "template": "website", "template_vars": {"ipv4": "192.0.2.8"}}),
        _zone(client, {"name": "bare.example"}),
        _zone(client, {"name": "imported.example", "zone_file": "$TTL 300\n@ IN MX 5 mail\nmail IN A 192.0.2.25\n"
                       "ftp 120 IN CNAME mail\n"}),
    ]  # fmt: skip
    for zone in zones:
        exported = client.get(zones_url(zone, "export")).json()["zone_file"]
        path = tmp_path / f"{zone.name}.zone"
        path.write_text(exported)
        result = named_checkzone(zone.name, path)
        assert result.returncode == 0, (zone.name, result.stdout, exported)
        assert f"loaded serial {Zone.all_tenants.get(pk=zone.pk).serial}" in result.stdout


@pytest.mark.django_db
@pytest.mark.usefixtures("checkzone")
def test_bind_backend_writes_checked_zone_files(tenant_a, tmp_path, settings, monkeypatch,
                                                django_capture_on_commit_callbacks):  # fmt: skip
    root = tmp_path / "node"
    settings.MPANEL_NODE_ROOT = root
    monkeypatch.setenv("MPANEL_DNS_BACKEND", "bind")
    dns_node(tenant_a)
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        zone = _zone(client, {"name": "files.example", "template": "website", "template_vars": {"ipv4": "192.0.2.1"}})
    zone = Zone.all_tenants.get(pk=zone.pk)
    assert zone.status == ZoneStatus.ACTIVE and zone.served_serial == zone.serial
    bind_dir = root / "dns" / "bind"
    zone_file = bind_dir / "files.example.zone"
    checked = named_checkzone("files.example", zone_file)
    assert checked.returncode == 0 and f"loaded serial {zone.serial}" in checked.stdout, checked.stdout
    conf = bind_dir / "zones.conf"
    assert f'zone "files.example." {{ type primary; file "{zone_file}"; }};' in conf.read_text()
    assert subprocess.run(["named-checkconf", "-z", str(conf)], capture_output=True).returncode == 0

    # A change: the new file has the new serial and the new address.
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(records_url(zone), {"name": "api", "type": "A", "content": "192.0.2.44"},
                           format="json").status_code == 201  # fmt: skip
    new_serial = Zone.all_tenants.get(pk=zone.pk).serial
    assert new_serial == zone.serial + 1
    text = zone_file.read_text()
    assert "api.files.example.\t3600\tIN\tA\t192.0.2.44" in text
    assert f"loaded serial {new_serial}" in named_checkzone("files.example", zone_file).stdout
    # The same zone again: nothing rewritten.
    from apps.dns import services
    from apps.nodes.drivers import driver_for

    with tenant_a.scope():
        again = driver_for(zone.node).dns_zone_ensure(services.zone_spec(Zone.objects.get(pk=zone.pk)))
    assert again["changed"] == 0

    # Deleted: the file and its stanza go.
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(zones_url(zone)).status_code == 202
    assert not zone_file.exists() and "files.example" not in conf.read_text()
    assert not Zone.all_tenants.filter(pk=zone.pk).exists()


@pytest.mark.usefixtures("checkzone")
def test_bind_refuses_what_named_checkzone_refuses(tmp_path):
    """The panel's rules keep a CNAME from sitting beside other data; should a spec get here with
    one anyway, BIND's check refuses it and the served file stays as it was."""
    bind = Bind(tmp_path)
    soa = {"name": "bad.example.", "type": "SOA", "ttl": 3600,
           "records": ["ns1.mpanel.invalid. hostmaster.mpanel.invalid. 2026010101 10800 3600 604800 3600"]}  # fmt: skip
    ns = {"name": "bad.example.", "type": "NS", "ttl": 3600, "records": ["ns1.mpanel.invalid."]}
    good = {"name": "bad.example.", "rrsets": [soa, ns]}
    assert bind.zone_ensure(good)["created"] is True
    before = (tmp_path / "dns" / "bind" / "bad.example.zone").read_text()
    clash = [{"name": "www.bad.example.", "type": t, "ttl": 60, "records": [c]}
             for t, c in (("CNAME", "bad.example."), ("A", "192.0.2.1"))]  # fmt: skip
    with pytest.raises(AgentError, match="named-checkzone refused") as refused:
        bind.zone_ensure({"name": "bad.example.", "rrsets": [soa, ns, *clash]})
    assert refused.value.permanent
    assert (tmp_path / "dns" / "bind" / "bad.example.zone").read_text() == before
    assert not list((tmp_path / "dns" / "bind").glob(".*.new"))


# --- a real named, told by rndc ------------------------------------------------------------------


@pytest.fixture
def named(tmp_path, monkeypatch):
    """A real named on loopback ports serving `<node root>/dns/bind/zones.conf`, controlled by rndc
    with its own key; MPANEL_BIND_RNDC points the backend at it."""
    if shutil.which("named") is None or shutil.which("rndc") is None:
        pytest.fail("bind9 (named, rndc) is needed: run the tests with `make test`")
    root, work = tmp_path / "node", tmp_path / "named"
    bind_dir = root / "dns" / "bind"
    bind_dir.mkdir(parents=True)
    work.mkdir()
    (bind_dir / "zones.conf").write_text("")
    port, control = free_port(), free_port()
    secret = base64.b64encode(os.urandom(32)).decode()
    key = f'key "mpanel" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'
    (work / "named.conf").write_text(
        key + f'controls {{ inet 127.0.0.1 port {control} allow {{ 127.0.0.1; }} keys {{ "mpanel"; }}; }};\n'
        f'options {{ directory "{work}"; pid-file "{work}/named.pid"; listen-on port {port} {{ 127.0.0.1; }};\n'
        "  listen-on-v6 { none; }; recursion no; dnssec-validation no; };\n"
        f'include "{bind_dir}/zones.conf";\n'
    )
    rndc_conf = work / "rndc.conf"
    rndc_conf.write_text(
        key + f'options {{ default-key "mpanel"; default-server 127.0.0.1; default-port {control}; }};\n'
    )
    rndc = f"rndc -c {rndc_conf}"
    started = subprocess.run(["named", "-c", str(work / "named.conf"), "-L", str(work / "named.log")],
                             capture_output=True, text=True)  # fmt: skip
    assert started.returncode == 0, started.stderr
    wait_for(lambda: subprocess.run([*rndc.split(), "status"], capture_output=True).returncode == 0,
             message="named's control channel")  # fmt: skip
    monkeypatch.setenv("MPANEL_DNS_BACKEND", "bind")
    monkeypatch.setenv("MPANEL_BIND_RNDC", rndc)
    yield root, port, rndc
    subprocess.run([*rndc.split(), "stop"], capture_output=True)
    pid_file = work / "named.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


def ask(port: int, name: str, rdtype: str = "A") -> tuple[int, list[str]]:
    """named's answer: its rcode and the answer's records."""
    response = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=3)
    return response.rcode(), sorted(r.to_text() for rrset in response.answer for r in rrset)


@pytest.mark.django_db
@pytest.mark.usefixtures("checkzone")
def test_named_serves_each_change_through_rndc(tenant_a, named, settings, django_capture_on_commit_callbacks):
    root, port, _rndc = named
    settings.MPANEL_NODE_ROOT = root
    dns_node(tenant_a)
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        zone = _zone(client, {"name": "live.example", "template": "website", "template_vars": {"ipv4": "192.0.2.1"}})
    assert Zone.all_tenants.get(pk=zone.pk).status == ZoneStatus.ACTIVE
    assert ask(port, "live.example.") == (dns.rcode.NOERROR, ["192.0.2.1"])  # a new zone: rndc reconfig

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(records_url(zone), {"name": "api", "type": "A", "content": "192.0.2.44"},
                           format="json").status_code == 201  # fmt: skip
    assert ask(port, "api.live.example.") == (dns.rcode.NOERROR, ["192.0.2.44"])  # a change: rndc reload
    serial = Zone.all_tenants.get(pk=zone.pk).serial
    assert ask(port, "live.example.", "SOA")[1][0].split()[2] == str(serial)

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(zones_url(zone)).status_code == 202
    assert ask(port, "live.example.")[0] == dns.rcode.REFUSED  # no longer a zone of this server


def small_zone(name: str, serial: int, glue: str) -> dict:
    """A zone spec as the panel sends it: SOA, one NS and its glue address."""
    soa = f"ns1.{name} hostmaster.{name} {serial} 10800 3600 604800 300"
    return {"name": name, "rrsets": [
        {"name": name, "type": "SOA", "ttl": 300, "records": [soa]},
        {"name": name, "type": "NS", "ttl": 300, "records": [f"ns1.{name}"]},
        {"name": f"ns1.{name}", "type": "A", "ttl": 300, "records": [glue]},
    ]}  # fmt: skip


def test_a_reload_that_failed_is_made_by_the_retry(named, monkeypatch):
    """named unreachable: the file is written and checked, the call fails as retryable; the retry
    finds the file unchanged and still tells named."""
    root, port, rndc = named
    bind = Bind(root)
    bind.zone_ensure(small_zone("retry.example.", 2026120201, "192.0.2.53"))
    assert ask(port, "ns1.retry.example.") == (dns.rcode.NOERROR, ["192.0.2.53"])

    spec = small_zone("retry.example.", 2026120202, "192.0.2.54")
    monkeypatch.setenv("MPANEL_BIND_RNDC", f"{rndc} -p 1")  # a port nothing listens on
    with pytest.raises(AgentError) as failed:
        bind.zone_ensure(spec)
    assert not failed.value.permanent
    monkeypatch.setenv("MPANEL_BIND_RNDC", rndc)
    assert "192.0.2.54" in (root / "dns" / "bind" / "retry.example.zone").read_text()
    assert ask(port, "ns1.retry.example.")[1] == ["192.0.2.53"]  # named still has the old data
    assert bind.zone_ensure(spec)["changed"] == 0  # the retry: nothing to write, named told anyway
    assert ask(port, "ns1.retry.example.") == (dns.rcode.NOERROR, ["192.0.2.54"])


def test_a_zone_named_never_learned_is_added_by_the_retry(named, monkeypatch):
    """The reconfig after a new zone's file failed: the retry's reload finds no such zone in named,
    so it reconfigures first, then the zone is served."""
    root, port, rndc = named
    bind = Bind(root)
    spec = small_zone("late.example.", 2026120201, "192.0.2.77")
    monkeypatch.setenv("MPANEL_BIND_RNDC", f"{rndc} -p 1")
    with pytest.raises(AgentError):
        bind.zone_ensure(spec)
    assert ask(port, "ns1.late.example.")[0] == dns.rcode.REFUSED  # written, but named does not know it
    monkeypatch.setenv("MPANEL_BIND_RNDC", rndc)
    assert bind.zone_ensure(spec)["changed"] == 0
    assert ask(port, "ns1.late.example.") == (dns.rcode.NOERROR, ["192.0.2.77"])
