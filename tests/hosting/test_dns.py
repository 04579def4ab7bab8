"""DNS: zones and records through the API, the rules checked with dnspython, serials, templates,
master files, and zones served by a real PowerDNS authoritative server queried with dnspython."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.dns import services, zonedata
from apps.dns.api import RecordViewSet, ZoneViewSet
from apps.dns.models import Record, Zone, ZoneStatus
from apps.jobs import services as job_services
from apps.jobs.models import Job, JobStatus
from apps.nodes.models import Node
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401


def dns_node(fx, hostname="dns-1") -> Node:
    with fx.scope():
        node = Node.objects.filter(hostname=hostname).first()
        return node or Node.objects.create(
            tenant=fx.tenant, hostname=hostname, roles=["dns"], vcpu=1, memory_mb=1024, disk_gb=10, max_pods=0
        )


def zone_in(fx, name: str, **extra) -> Zone:
    with fx.scope():
        return services.zone_create(tenant=fx.tenant, name=name, node=dns_node(fx), **extra)


@pytest.fixture
def no_dispatch(monkeypatch):
    """Jobs are stored but not sent: the panel's side only."""
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


@pytest.mark.usefixtures("no_dispatch")
class TestZoneApi(ApiTestCase):
    viewset = ZoneViewSet
    basename = "dns-zone"
    roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }
    success = {"destroy": 202}

    def make(self, fx, seq):
        return services.zone_create(tenant=fx.tenant, name=f"zone{seq}.example", node=dns_node(fx))

    def create_payload(self, fx, seq):
        dns_node(fx)
        return {"name": f"new{seq}.example", "template": "website", "template_vars": {"ipv4": "192.0.2.10"}}

    def update_payload(self, fx, obj, seq):
        return {"default_ttl": 600 + seq}


@pytest.mark.usefixtures("no_dispatch")
class TestRecordApi(ApiTestCase):
    viewset = RecordViewSet
    basename = "dns-record"
    roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    def zone(self, fx) -> Zone:
        with fx.scope():
            return Zone.objects.filter(name="records.example").first() or zone_in(fx, "records.example")

    def url_kwargs(self, fx):
        return {"zone_pk": str(self.zone(fx).pk)}

    def make(self, fx, seq):
        return services.record_create(zone=self.zone(fx), name=f"host{seq}", type="A", content=f"192.0.2.{seq % 250}")

    def create_payload(self, fx, seq):
        return {"name": f"new{seq}", "type": "TXT", "content": f"hello {seq}"}

    def update_payload(self, fx, obj, seq):
        return {"name": obj.name, "type": "A", "content": f"198.51.100.{seq % 250}", "ttl": 300}


def zones_url(zone=None, action=None):
    if zone is None:
        return reverse("dns-zone-list")
    if action:
        return reverse(f"dns-zone-{action}", kwargs={"pk": zone.pk})
    return reverse("dns-zone-detail", kwargs={"pk": zone.pk})


def records_url(zone, record=None):
    if record is None:
        return reverse("dns-record-list", kwargs={"zone_pk": zone.pk})
    return reverse("dns-record-detail", kwargs={"zone_pk": zone.pk, "pk": record.pk})


def snapshot_of(zone) -> tuple:
    fresh = Zone.all_tenants.get(pk=zone.pk)
    records = sorted(Record.all_tenants.filter(zone=zone).values_list("name", "type", "ttl", "content"))
    return fresh.serial, records


# --- the rules --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch")
class TestValidation:
    @pytest.mark.parametrize(
        ("payload", "fault"),
        [
            ({"name": "www", "type": "A", "content": "300.1.1.1"}, "content"),
            ({"name": "www", "type": "AAAA", "content": "192.0.2.1"}, "content"),
            ({"name": "@", "type": "CNAME", "content": "other.example."}, "apex"),
            ({"name": "mail", "type": "CNAME", "content": "x.example."}, "beside"),
            ({"name": "@", "type": "MX", "content": "10 192.0.2.1"}, "host name"),
            ({"name": "@", "type": "NS", "content": "192.0.2.1"}, "host name"),
            ({"name": "@", "type": "MX", "content": "mail.example.com."}, "content"),
            ({"name": "mail", "type": "A", "content": "192.0.2.25"}, "Duplicate"),
            ({"name": "x", "type": "SRV", "content": "10 5 sip.example.com."}, "content"),
            ({"name": "x", "type": "CAA", "content": "0 issue"}, "content"),
            ({"name": "x", "type": "HINFO", "content": "a b"}, "type"),
            ({"name": "www.elsewhere.example.", "type": "A", "content": "192.0.2.1"}, "outside"),
        ],
    )
    def test_bad_record_is_400_naming_it_and_zone_unchanged(self, tenant_a, payload, fault):
        zone = zone_in(tenant_a, "rules.example")
        with tenant_a.scope():
            services.record_create(zone=zone, name="mail", type="A", content="192.0.2.25")
        before = snapshot_of(zone)
        response = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant).post(
            records_url(zone), payload, format="json"
        )
        assert response.status_code == 400, response.content
        assert fault.lower() in response.content.decode().lower(), response.content
        assert snapshot_of(zone) == before

    def test_cname_error_names_the_record(self, tenant_a):
        zone = zone_in(tenant_a, "names.example")
        with tenant_a.scope():
            services.record_create(zone=zone, name="www", type="A", content="192.0.2.1")
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = client.post(
            records_url(zone), {"name": "www", "type": "CNAME", "content": "x.example."}, format="json"
        )
        assert response.status_code == 400
        assert "www CNAME x.example." in response.json()["content"][0]

    def test_txt_longer_than_255_is_split_and_valid_records_are_canonical(self, tenant_a):
        zone = zone_in(tenant_a, "txt.example")
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        long = "k=" + "a" * 600
        response = client.post(records_url(zone), {"name": "long", "type": "TXT", "content": long}, format="json")
        assert response.status_code == 201, response.content
        content = response.json()["content"]
        parts = content.split(" ")
        assert len(parts) == 3 and all(len(p.strip('"')) <= 255 for p in parts)
        assert "".join(p.strip('"') for p in parts) == long
        response = client.post(records_url(zone), {"name": "Mail", "type": "MX", "content": "10 mx1"}, format="json")
        assert response.status_code == 201
        assert response.json()["name"] == "mail" and response.json()["content"] == "10 mx1.txt.example."

    def test_zone_name_is_idna_and_unique(self, tenant_a):
        dns_node(tenant_a)
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = client.post(zones_url(), {"name": "Bücher.Example."}, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["name"] == "xn--bcher-kva.example"
        assert client.post(zones_url(), {"name": "xn--bcher-kva.example"}, format="json").status_code == 400
        assert client.post(zones_url(), {"name": "bad_-.example"}, format="json").status_code == 400
        assert client.post(zones_url(), {"name": "localhost"}, format="json").status_code == 400

    def test_no_dns_node_is_409(self, tenant_a):
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = client.post(zones_url(), {"name": "nonode.example"}, format="json")
        assert response.status_code == 409 and response.json()["code"] == "no_dns_node"

    def test_zone_gets_ns_soa_and_template_records(self, tenant_a):
        dns_node(tenant_a)
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        payload = {
            "name": "tpl.example",
            "template": "website-mail",
            "template_vars": {"ipv4": "192.0.2.7", "mail_host": "mx.tpl.example"},
            "nameservers": ["ns1.dns.example", "ns2.dns.example"],
        }
        response = client.post(zones_url(), payload, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["soa_mname"] == "ns1.dns.example" and body["status"] == "pending"
        assert str(body["serial"]).startswith(date.today().strftime("%Y%m%d"))
        with tenant_a.scope():
            rows = set(Record.objects.filter(zone_id=body["id"]).values_list("name", "type", "content"))
        assert rows == {
            ("@", "NS", "ns1.dns.example."),
            ("@", "NS", "ns2.dns.example."),
            ("@", "A", "192.0.2.7"),
            ("www", "CNAME", "tpl.example."),
            ("@", "MX", "10 mx.tpl.example."),
            ("@", "TXT", '"v=spf1 mx -all"'),
            ("_dmarc", "TXT", '"v=DMARC1; p=quarantine"'),
        }
        assert Job.all_tenants.filter(type="dns.zone.sync", object_id=body["id"]).count() == 1


def test_serial_is_yyyymmddnn_and_grows():
    today = date(2026, 11, 25)
    assert zonedata.next_serial(0, today) == 2026112501
    assert zonedata.next_serial(2026112501, today) == 2026112502
    assert zonedata.next_serial(2026112499, today) == 2026112501
    assert zonedata.next_serial(2026112599, today) == 2026112600  # a 100th change runs into tomorrow
    assert zonedata.next_serial(2026112207, today) == 2026112501
    assert zonedata.next_serial(2026112601, today) == 2026112602  # never goes back


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch")
def test_every_change_bumps_the_serial_and_stores_a_push(tenant_a):
    zone = zone_in(tenant_a, "serial.example")
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    serials = [Zone.all_tenants.get(pk=zone.pk).serial]
    response = client.post(records_url(zone), {"name": "a", "type": "A", "content": "192.0.2.1"}, format="json")
    serials.append(Zone.all_tenants.get(pk=zone.pk).serial)
    record = Record.all_tenants.get(pk=response.json()["id"])
    client.patch(records_url(zone, record), {"content": "192.0.2.2"}, format="json")
    serials.append(Zone.all_tenants.get(pk=zone.pk).serial)
    client.delete(records_url(zone, record))
    serials.append(Zone.all_tenants.get(pk=zone.pk).serial)
    assert serials == sorted(set(serials)) and len(serials) == 4
    assert Job.all_tenants.filter(type="dns.zone.sync", object_id=str(zone.pk)).count() == 4
    assert AuditEvent.objects.filter(action__startswith="dns.record.").count() == 3


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch")
def test_a_zone_being_deleted_refuses_every_change(tenant_a):
    """The zone's lifecycle (apps.dns.services.zones): deleting is the last state the tenant sets;
    the zone row is locked, audited and its job stored once."""
    zone = zone_in(tenant_a, "leaving.example")
    record = Record.all_tenants.filter(zone=zone).first()
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = client.delete(zones_url(zone))
    assert response.status_code == 202 and response.json()["status"] == ZoneStatus.DELETING
    refused = [
        client.delete(zones_url(zone)),
        client.patch(zones_url(zone), {"default_ttl": 600}, format="json"),
        client.post(records_url(zone), {"name": "a", "type": "A", "content": "192.0.2.1"}, format="json"),
        client.patch(records_url(zone, record), {"ttl": 60}, format="json"),
        client.delete(records_url(zone, record)),
        client.post(zones_url(zone, "import"), {"zone_file": "a IN A 192.0.2.1\n"}, format="json"),
    ]
    for response in refused:
        assert response.status_code == 409 and response.json()["detail"] == "This zone is being deleted."
    assert Job.all_tenants.filter(type="dns.zone.delete", object_id=str(zone.pk)).count() == 1
    event = AuditEvent.objects.get(action="dns.zone.delete", object_id=str(zone.pk))
    assert event.changes["status"] == [ZoneStatus.PENDING, ZoneStatus.DELETING]
    assert event.actor == tenant_a.users[Role.ADMIN]


# --- master files -------------------------------------------------------------------------------

ZONE_FILE = """$ORIGIN imported.example.
$TTL 1800
@   IN SOA ns1.host.example. admin.host.example. 7 7200 900 1209600 300
@   IN NS  ns1.host.example.
@   IN NS  ns2.host.example.
@   IN A   192.0.2.80
www 600 IN CNAME @
@   IN MX  10 mail
mail IN A 192.0.2.25
_sip._tcp IN SRV 10 5 5060 sip.imported.example.
@   IN CAA 0 issue "letsencrypt.org"
@   IN TXT "v=spf1" " mx -all"
"""


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch")
def test_import_and_export_master_file(tenant_a):
    zone = zone_in(tenant_a, "imported.example")
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = client.post(zones_url(zone, "import"), {"zone_file": ZONE_FILE}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["soa_refresh"] == 7200 and response.json()["soa_minimum"] == 300
    assert response.json()["records_count"] == 9
    exported = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant).get(zones_url(zone, "export"))
    assert exported.status_code == 200
    text = exported.json()["zone_file"]
    import dns.zone

    parsed = dns.zone.from_text(text, origin="imported.example.", relativize=False)
    assert parsed.find_rdataset("www.imported.example.", "CNAME")[0].to_text() == "imported.example."
    assert parsed.find_rdataset("imported.example.", "MX")[0].to_text() == "10 mail.imported.example."
    assert parsed.find_rdataset("www.imported.example.", "CNAME").ttl == 600
    soa = parsed.find_rdataset("imported.example.", "SOA")[0]
    assert soa.serial == Zone.all_tenants.get(pk=zone.pk).serial and soa.serial > 7


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch")
def test_bad_import_is_400_and_changes_nothing(tenant_a):
    zone = zone_in(tenant_a, "imported.example")
    before = snapshot_of(zone)
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    bad = ZONE_FILE + "mail IN CNAME elsewhere.example.\n"
    response = client.post(zones_url(zone, "import"), {"zone_file": bad}, format="json")
    assert response.status_code == 400 and "mail CNAME" in response.json()["zone_file"][0]
    garbage = client.post(zones_url(zone, "import"), {"zone_file": "@ IN A not-an-ip\n"}, format="json")
    assert garbage.status_code == 400 and "zone_file" in garbage.json()
    assert snapshot_of(zone) == before


# --- served by a real PowerDNS ------------------------------------------------------------------


@pytest.mark.django_db
def test_zone_served_by_powerdns(tenant_a, pdns_node_env, django_capture_on_commit_callbacks):  # noqa: F811
    pdns = pdns_node_env
    dns_node(tenant_a)
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(zones_url(), {"name": "served.example", "template": "website",
                                             "template_vars": {"ipv4": "192.0.2.10"}}, format="json")  # fmt: skip
    assert response.status_code == 201, response.content
    zone = Zone.all_tenants.get(pk=response.json()["id"])
    assert zone.status == ZoneStatus.ACTIVE and zone.served_serial == zone.serial, zone.last_error
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(records_url(zone), {"name": "api", "type": "A", "content": "192.0.2.20"}, format="json")
        client.post(records_url(zone), {"name": "@", "type": "MX", "content": "10 mx.served.example."}, format="json")
        client.post(records_url(zone), {"name": "t", "type": "TXT", "content": "x" * 300}, format="json")
    assert response.status_code == 201
    record = Record.all_tenants.get(pk=response.json()["id"])
    assert pdns.ask("served.example.", "A") == ["192.0.2.10"]
    assert pdns.ask("api.served.example.", "A") == ["192.0.2.20"]
    assert pdns.ask("www.served.example.", "CNAME") == ["served.example."]
    assert pdns.ask("served.example.", "MX") == ["10 mx.served.example."]
    assert pdns.ask("served.example.", "NS") == ["ns1.mpanel.invalid.", "ns2.mpanel.invalid."]
    assert pdns.ask("t.served.example.", "TXT") == [f'"{"x" * 255}" "{"x" * 45}"']
    first = pdns.serial("served.example.")
    assert first == Zone.all_tenants.get(pk=zone.pk).serial

    with django_capture_on_commit_callbacks(execute=True):
        response = client.patch(records_url(zone, record), {"content": "192.0.2.21"}, format="json")
    assert response.status_code == 200
    assert pdns.ask("api.served.example.", "A") == ["192.0.2.21"]
    assert pdns.serial("served.example.") == first + 1 == Zone.all_tenants.get(pk=zone.pk).serial

    # The push is idempotent: running the last job again changes nothing on the server.
    job = Job.all_tenants.filter(type="dns.zone.sync", object_id=str(zone.pk)).order_by("-created_at").first()
    assert job.status == JobStatus.SUCCEEDED and job.result["changed"] >= 1
    Job.all_tenants.filter(pk=job.pk).update(status=JobStatus.PENDING)
    job_services.run_job(job.pk)
    assert Job.all_tenants.get(pk=job.pk).result["changed"] == 0

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(records_url(zone, record)).status_code == 204
    assert pdns.ask("api.served.example.", "A") == []

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(zones_url(zone)).status_code == 202
    assert not Zone.all_tenants.filter(pk=zone.pk).exists()
    assert pdns.serial("served.example.") is None


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch")
def test_a_local_server_serves_a_zone_name_for_one_tenant_only(tenant_a, tenant_b):
    zone_in(tenant_a, "shared.example")
    dns_node(tenant_b)
    client = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
    response = client.post(zones_url(), {"name": "shared.example"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "name_taken"
    assert client.post(zones_url(), {"name": "other.example"}, format="json").status_code == 201


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch")
def test_the_zone_list_counts_records_in_the_same_statements_for_any_number_of_zones(
    tenant_a, tenant_b, django_assert_max_num_queries
):
    zones = [zone_in(tenant_a, f"counted-{n}.example") for n in range(4)]
    zone_in(tenant_b, "theirs-counted.example")  # another tenant's records are never counted
    with tenant_a.scope():
        Record.objects.filter(zone=zones[0]).delete()  # a zone with no record counts 0, without a query of its own
        expected = {zone.name: Record.objects.filter(zone=zone).count() for zone in zones}
    client = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    with django_assert_max_num_queries(6) as captured:
        response = client.get(zones_url())
    assert response.status_code == 200, response.content
    assert {row["name"]: row["records_count"] for row in response.json()["results"]} == expected
    assert expected[zones[0].name] == 0 and min(expected[z.name] for z in zones[1:]) > 0
    assert not any("GROUP BY" in query["sql"] for query in captured.captured_queries)
