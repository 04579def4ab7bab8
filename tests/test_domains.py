"""Domains: IDNA names, the manual registrar, ownership verified by a TXT record looked up with
dnspython at a real PowerDNS server, renewals billed, expiry, transfer out."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.billing.models import Invoice
from apps.customers.models import Customer
from apps.domains import services
from apps.domains.api import DomainViewSet
from apps.domains.models import Domain, DomainStatus
from apps.domains.registrars import add_years
from apps.tenancy.roles import ORDERED, Role

from .api_mixin import ApiTestCase
from .conftest import client_for
from .dns_support import pdns_node_env, powerdns  # noqa: F401
from .test_dns import dns_node, records_url, zones_url


def customer_in(fx, name="Acme") -> Customer:
    with fx.scope():
        return Customer.objects.filter(name=name).first() or Customer.objects.create(
            tenant=fx.tenant, name=name, email=f"{name.lower()}@example.com", currency="EUR"
        )


def domain_in(fx, name: str, **extra) -> Domain:
    with fx.scope():
        return services.domain_create(tenant=fx.tenant, name=name, **extra)


def url(domain=None, action=None) -> str:
    if domain is None:
        return reverse("domain-list")
    if action:
        return reverse(f"domain-{action}", kwargs={"pk": domain.pk})
    return reverse("domain-detail", kwargs={"pk": domain.pk})


class TestDomainApi(ApiTestCase):
    viewset = DomainViewSet
    basename = "domain"
    roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    def make(self, fx, seq):
        return services.domain_create(tenant=fx.tenant, name=f"domain{seq}.example", customer=customer_in(fx))

    def create_payload(self, fx, seq):
        return {"name": f"new{seq}.example", "customer": str(customer_in(fx).pk), "nameservers": ["ns1.host.example"]}

    def update_payload(self, fx, obj, seq):
        return {"auto_renew": bool(seq % 2), "nameservers": [f"ns{seq}.host.example", "ns0.host.example"]}


@pytest.mark.django_db
class TestDomains:
    def test_create_normalises_idna_and_answers_the_challenge(self, tenant_a):
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        payload = {"name": "Müller.Example.", "expires_at": "2027-03-01", "nameservers": ["NS1.Host.Example."]}
        response = client.post(url(), payload, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["name"] == "xn--mller-kva.example" and body["unicode_name"] == "müller.example"
        assert body["status"] == "pending_verification" and body["registrar"] == "manual"
        assert body["expires_at"] == "2027-03-01" and body["nameservers"] == ["ns1.host.example"]
        assert body["verification"]["name"] == "_mpanel-challenge.xn--mller-kva.example."
        assert body["verification"]["content"].startswith("mpanel-verification=")
        assert client.post(url(), {"name": "xn--mller-kva.example"}, format="json").status_code == 400
        assert client.post(url(), {"name": "bad..example"}, format="json").status_code == 400
        assert client.post(url(), {"name": "x.example", "registrar": "nope"}, format="json").status_code == 400

    def test_customer_of_another_tenant_is_refused(self, tenant_a, tenant_b):
        other = customer_in(tenant_b, "Other")
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = client.post(url(), {"name": "a.example", "customer": str(other.pk)}, format="json")
        assert response.status_code == 400 and "customer" in response.json()

    def test_renew_extends_and_bills_the_customer(self, tenant_a):
        customer = customer_in(tenant_a)
        domain = domain_in(tenant_a, "renew.example", customer=customer, expires_at=date(2030, 5, 1),
                           renewal_price=Decimal("12.50"))  # fmt: skip
        for role in ORDERED:
            code = (
                client_for(tenant_a.users[role], tenant_a.tenant).post(url(domain, "renew"), {"years": 2}).status_code
            )
            if not role.includes(Role.BILLING):
                assert code == 403, role
        # BILLING, ADMIN and OWNER renewed it: three times two years.
        fresh = Domain.all_tenants.get(pk=domain.pk)
        assert fresh.expires_at == date(2036, 5, 1)
        with tenant_a.scope():
            invoices = Invoice.objects.filter(customer=customer)
            assert invoices.count() == 3
            line = invoices.first().lines.get()
        assert line.quantity == 2 and line.unit_price == Decimal("12.50") and "renew.example" in line.description

    def test_expiry_sweep_and_renewal_of_a_lapsed_domain(self, tenant_a):
        domain = domain_in(tenant_a, "lapse.example", expires_at=date(2026, 1, 10))
        assert services.domains_expire(today=date(2026, 1, 10)) == 0
        assert services.domains_expire(today=date(2026, 1, 11)) == 1
        assert Domain.all_tenants.get(pk=domain.pk).status == DomainStatus.EXPIRED
        with tenant_a.scope():
            renewed = services.domain_renew(domain=domain, years=1, today=date(2026, 2, 1))
        assert renewed.expires_at == date(2027, 2, 1) and renewed.status == DomainStatus.PENDING_VERIFICATION
        assert add_years(date(2028, 2, 29), 1) == date(2029, 2, 28)

    def test_transfer_out_is_owner_only_and_final(self, tenant_a):
        domain = domain_in(tenant_a, "leave.example")
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        assert admin.post(url(domain, "transfer-out")).status_code == 403
        owner = client_for(tenant_a.owner, tenant_a.tenant)
        response = owner.post(url(domain, "transfer-out"))
        assert response.status_code == 200 and response.json()["status"] == "transferred_out"
        assert owner.post(url(domain, "transfer-out")).status_code == 409
        assert owner.post(url(domain, "renew"), {"years": 1}).status_code == 409
        assert owner.patch(url(domain), {"auto_renew": True}, format="json").status_code == 409

    def test_actions_of_another_tenant_are_404(self, tenant_a, tenant_b):
        domain = domain_in(tenant_a, "mine.example")
        client = client_for(tenant_b.owner, tenant_b.tenant)
        for action in ("verify", "renew", "transfer-out"):
            assert client.post(url(domain, action)).status_code == 404
        assert Domain.all_tenants.get(pk=domain.pk).status == DomainStatus.PENDING_VERIFICATION


@pytest.mark.django_db
def test_ownership_verified_by_txt_on_powerdns(tenant_a, pdns_node_env, settings, django_capture_on_commit_callbacks):  # noqa: F811
    """The TXT record is published through our DNS API into the real PowerDNS, and the check looks
    it up there with dnspython as it would at any resolver."""
    settings.MPANEL_DNS_RESOLVERS = [f"127.0.0.1:{pdns_node_env.dns_port}"]
    settings.MPANEL_DNS_RESOLVER_TIMEOUT = 3
    customer = customer_in(tenant_a)
    domain = domain_in(tenant_a, "proof.example", customer=customer)
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)

    # Nothing published yet: 409, still pending.
    response = client.post(url(domain, "verify"))
    assert response.status_code == 409 and response.json()["code"] == "verification_failed"

    dns_node(tenant_a)
    with django_capture_on_commit_callbacks(execute=True):
        zone = client.post(zones_url(), {"name": "proof.example"}, format="json").json()
    zone_obj = type("Z", (), {"pk": zone["id"]})
    challenge = domain.challenge_value
    with django_capture_on_commit_callbacks(execute=True):
        wrong = {"name": "_mpanel-challenge", "type": "TXT", "content": "mpanel-verification=wrong"}
        assert client.post(records_url(zone_obj), wrong, format="json").status_code == 201
    assert client.post(url(domain, "verify")).status_code == 409
    assert Domain.all_tenants.get(pk=domain.pk).verified_at is None

    with django_capture_on_commit_callbacks(execute=True):
        right = {"name": "_mpanel-challenge", "type": "TXT", "content": challenge}
        assert client.post(records_url(zone_obj), right, format="json").status_code == 201
    response = client.post(url(domain, "verify"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "active" and response.json()["verified_at"]

    with tenant_a.scope():
        assert services.domain_usable(name="proof.example", customer=customer_in(tenant_a, "Someone else"))
        pending = domain_in(tenant_a, "pending.example", customer=customer)
        assert services.domain_usable(name="pending.example", customer=customer)
        assert not services.domain_usable(name="pending.example", customer=customer_in(tenant_a, "Someone else"))
        assert pending.status == DomainStatus.PENDING_VERIFICATION
