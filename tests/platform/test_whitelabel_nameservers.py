"""Vanity name servers: a brand names its own (``ns1.brand.example``…); the tenant's new zones get them
as apex NS and SOA primary, and ``nameservers_apply`` rewrites its existing zones through the normal
zone push. Checked against a real PowerDNS (tests/dns_support.py)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.dns.models import Zone
from apps.tenancy.roles import Role
from apps.whitelabel import services
from apps.whitelabel.models import Brand
from tests.conftest import client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401
from tests.hosting.test_dns import dns_node, zones_url

BRAND = "/api/v1/enterprise/white-label"
PLATFORM = ["ns1.mpanel.invalid.", "ns2.mpanel.invalid."]


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value, error",
    [
        (["ns1.brand.example"], "at least two"),
        (["ns1.brand.example", "ns1.brand.example"], "twice"),
        (["ns1.brand.example", "not a name!"], ""),
        (["ns1.brand.example", "-bad.brand.example"], ""),
        ([f"ns{i}.brand.example" for i in range(14)], ""),
    ],
)
def test_nameservers_are_validated(tenant_a, value, error):
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = admin.patch(BRAND, {"nameservers": value}, format="json")
    assert response.status_code == 400, response.content
    assert "nameservers" in response.json().get("errors", response.json()) or "nameservers" in str(response.json())
    assert error in str(response.json())
    assert not Brand.all_tenants.filter(tenant=tenant_a.tenant).exclude(nameservers=[]).exists()


@pytest.mark.django_db
def test_nameservers_are_normalised_and_shown(tenant_a):
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = admin.patch(BRAND, {"nameservers": ["NS1.Brand.example.", "ns2.brand.example"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["nameservers"] == ["ns1.brand.example", "ns2.brand.example"]
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    assert member.get(BRAND).json()["nameservers"] == ["ns1.brand.example", "ns2.brand.example"]
    assert member.patch(BRAND, {"nameservers": []}, format="json").status_code == 403
    assert admin.patch(BRAND, {"nameservers": []}, format="json").json()["nameservers"] == []


def soa_mname(pdns, zone: str) -> str:
    (soa,) = pdns.ask(zone, "SOA")
    return soa.split()[0]


@pytest.mark.django_db
def test_vanity_nameservers_in_new_and_existing_zones(
    tenant_a,
    tenant_b,
    pdns_node_env,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    pdns = pdns_node_env
    dns_node(tenant_a)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)

    def zone(name, **extra):
        with django_capture_on_commit_callbacks(execute=True):
            response = admin.post(zones_url(), {"name": name, **extra}, format="json")
        assert response.status_code == 201, response.content
        return Zone.all_tenants.get(pk=response.json()["id"])

    before = zone("before-brand.example")
    own = zone("own-ns.example", nameservers=["ns.elsewhere.example", "ns2.elsewhere.example"])
    assert pdns.ask("before-brand.example.", "NS") == PLATFORM

    vanity = ["ns1.nimbus-brand.example", "ns2.nimbus-brand.example"]
    assert admin.patch(BRAND, {"nameservers": vanity}, format="json").status_code == 200
    after = zone("after-brand.example")
    assert pdns.ask("after-brand.example.", "NS") == [n + "." for n in vanity]
    assert soa_mname(pdns, "after-brand.example.") == "ns1.nimbus-brand.example."
    # Another tenant's new zones keep the platform's.
    dns_node(tenant_b)
    with django_capture_on_commit_callbacks(execute=True):
        other = client_for(tenant_b.owner, tenant_b.tenant).post(zones_url(), {"name": "bee.example"}, format="json")
    assert other.status_code == 201 and pdns.ask("bee.example.", "NS") == PLATFORM

    # Existing zones change only when applied, through the zone push.
    assert pdns.ask("before-brand.example.", "NS") == PLATFORM
    apply = reverse("white-label-nameservers-apply")
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    assert member.post(apply).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        applied = admin.post(apply)
    assert applied.status_code == 200, applied.content
    assert applied.json() == {"nameservers": vanity, "zones": [{"id": str(before.pk), "name": "before-brand.example"}]}
    assert pdns.ask("before-brand.example.", "NS") == [n + "." for n in vanity]
    assert soa_mname(pdns, "before-brand.example.") == "ns1.nimbus-brand.example."
    # A zone that names other name servers is the tenant's own choice: left alone.
    assert pdns.ask("own-ns.example.", "NS") == ["ns.elsewhere.example.", "ns2.elsewhere.example."]
    for z in (before, after, own):
        z.refresh_from_db()
        assert z.status == "active" and z.served_serial == z.serial, z.last_error
    event = AuditEvent.objects.filter(action="dns.zone.nameservers", object_id=str(before.pk)).get()
    assert event.changes["nameservers"] == [[n.rstrip(".") for n in PLATFORM], vanity]
    assert event.changes["soa_mname"][1].rstrip(".") == "ns1.nimbus-brand.example"

    # A new set replaces the one applied before (known as ours), again leaving the tenant's own alone.
    renamed = ["ns1.nimbus-dns.example", "ns2.nimbus-dns.example", "ns3.nimbus-dns.example"]
    assert admin.patch(BRAND, {"nameservers": renamed}, format="json").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        applied = services.nameservers_apply(tenant=tenant_a.tenant)
    assert sorted(z.name for z in applied.zones) == ["after-brand.example", "before-brand.example"]
    assert applied.nameservers == renamed
    for name in ("before-brand.example.", "after-brand.example."):
        assert pdns.ask(name, "NS") == [n + "." for n in renamed]
        assert soa_mname(pdns, name) == "ns1.nimbus-dns.example."
    assert pdns.ask("own-ns.example.", "NS") == ["ns.elsewhere.example.", "ns2.elsewhere.example."]
    # Back to the platform's: an empty set applies MPANEL_DNS_NAMESERVERS.
    assert admin.patch(BRAND, {"nameservers": []}, format="json").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        services.nameservers_apply(tenant=tenant_a.tenant)
    assert pdns.ask("after-brand.example.", "NS") == PLATFORM
