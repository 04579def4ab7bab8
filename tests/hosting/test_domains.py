"""Domains: IDNA names, the manual registrar, ownership verified by a TXT record looked up with
dnspython at a real PowerDNS server, renewals billed, expiry, transfer out."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.models import Invoice
from apps.common import context
from apps.customers.models import Customer
from apps.domains import services
from apps.domains.api import DomainViewSet
from apps.domains.models import Domain, DomainStatus
from apps.domains.registrars import ManualRegistrar, RegistrarError, add_years
from apps.jobs.models import Job, JobStatus
from apps.jobs.services import run_job
from apps.tenancy.roles import ORDERED, Role
from tests.api_mixin import ApiTestCase
from tests.billing.test_billing_concurrency import run_parallel
from tests.conftest import client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401
from tests.hosting.test_dns import dns_node, records_url, zones_url


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
    def test_create_normalises_idna_and_answers_the_challenge(self, tenant_a, django_capture_on_commit_callbacks):
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        payload = {"name": "Müller.Example.", "expires_at": "2027-03-01", "nameservers": ["NS1.Host.Example."]}
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url(), payload, format="json")
        assert response.status_code == 201, response.content
        # The registration is a job, answered as stored; it ran in-process once the request committed.
        assert response.json()["job"]["type"] == "domain.register" and response.json()["registrar_state"] == "pending"
        assert response.json()["pending_nameservers"] == ["ns1.host.example"]
        job = Job.all_tenants.get(pk=response.json()["job"]["id"])
        assert job.status == JobStatus.SUCCEEDED
        body = client.get(url(Domain.all_tenants.get(pk=response.json()["id"]))).json()
        assert body["registrar_state"] == "ok" and body["pending_nameservers"] is None and body["job"] is None
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

    def test_renew_extends_and_bills_the_customer(self, tenant_a, django_capture_on_commit_callbacks):
        customer = customer_in(tenant_a)
        domain = domain_in(tenant_a, "renew.example", customer=customer, expires_at=date(2030, 5, 1),
                           renewal_price=Decimal("12.50"))  # fmt: skip
        for role in ORDERED:
            with django_capture_on_commit_callbacks(execute=True):
                response = client_for(tenant_a.users[role], tenant_a.tenant).post(url(domain, "renew"), {"years": 2})
            if not role.includes(Role.BILLING):
                assert response.status_code == 403, role
            else:
                assert response.status_code == 202, response.content
                job = Job.all_tenants.get(pk=response.json()["job"]["id"])
                assert job.type == "domain.renew" and job.status == JobStatus.SUCCEEDED and job.result["invoice"]
        # BILLING, ADMIN and OWNER renewed it: three times two years.
        fresh = Domain.all_tenants.get(pk=domain.pk)
        assert fresh.expires_at == date(2036, 5, 1)
        with tenant_a.scope():
            invoices = Invoice.objects.filter(customer=customer)
            assert invoices.count() == 3
            line = invoices.first().lines.get()
        assert line.quantity == 2 and line.unit_price == Decimal("12.50") and "renew.example" in line.description

    def test_expiry_sweep_and_renewal_of_a_lapsed_domain(self, tenant_a, django_capture_on_commit_callbacks):
        domain = domain_in(tenant_a, "lapse.example", expires_at=date(2026, 1, 10))
        assert services.domains_expire(today=date(2026, 1, 10)) == 0
        assert services.domains_expire(today=date(2026, 1, 11)) == 1
        assert Domain.all_tenants.get(pk=domain.pk).status == DomainStatus.EXPIRED
        with tenant_a.scope(), django_capture_on_commit_callbacks(execute=True):
            services.domain_renew(domain=domain, years=1, today=date(2026, 2, 1))
        renewed = Domain.all_tenants.get(pk=domain.pk)
        assert renewed.expires_at == date(2027, 2, 1) and renewed.status == DomainStatus.PENDING_VERIFICATION
        assert add_years(date(2028, 2, 29), 1) == date(2029, 2, 28)

    def test_transfer_out_is_owner_only_and_final(self, tenant_a, django_capture_on_commit_callbacks):
        domain = domain_in(tenant_a, "leave.example")
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        assert admin.post(url(domain, "transfer-out")).status_code == 403
        owner = client_for(tenant_a.owner, tenant_a.tenant)
        with django_capture_on_commit_callbacks(execute=True):
            response = owner.post(url(domain, "transfer-out"))
        assert response.status_code == 202 and response.json()["job"]["type"] == "domain.transfer_out"
        assert client_for(tenant_a.owner, tenant_a.tenant).get(url(domain)).json()["status"] == "transferred_out"
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


class RefusingRegistrar(ManualRegistrar):
    """A registrar that refuses renewals, as a real one does (e.g. an EPP 2304 status prohibits)."""

    name = "refusing"

    def renew(self, domain, *, years, today):
        raise RegistrarError("The registry refused: clientRenewProhibited.")


@pytest.fixture
def refusing_registrar(settings):
    settings.MPANEL_DOMAIN_REGISTRARS = {**settings.MPANEL_DOMAIN_REGISTRARS,
                                         "refusing": "tests.hosting.test_domains.RefusingRegistrar"}  # fmt: skip


def _active(fx, name, expires_at, **extra) -> Domain:
    domain = domain_in(fx, name, expires_at=expires_at, **extra)
    Domain.all_tenants.filter(pk=domain.pk).update(status=DomainStatus.ACTIVE, registrar_state="ok")
    return Domain.all_tenants.get(pk=domain.pk)


@pytest.mark.django_db
class TestRegistrarJobs:
    def test_auto_renew_renews_the_due_period_once(self, tenant_a, django_capture_on_commit_callbacks):
        today = date(2026, 6, 1)
        customer = customer_in(tenant_a)
        due = _active(tenant_a, "due.example", today + timedelta(days=10), customer=customer,
                      renewal_price=Decimal("9.90"))  # fmt: skip
        later = _active(tenant_a, "later.example", today + timedelta(days=200))
        off = _active(tenant_a, "off.example", today + timedelta(days=5), auto_renew=False)
        pending = domain_in(tenant_a, "pending-ar.example", expires_at=today + timedelta(days=5))
        with django_capture_on_commit_callbacks(execute=True):
            jobs = services.domains_auto_renew(today=today)
        assert [j.object_id for j in jobs] == [str(due.pk)]
        fresh = Domain.all_tenants.get(pk=due.pk)
        assert fresh.expires_at == add_years(due.expires_at, 1) and fresh.registrar_state == "ok"
        job = Job.all_tenants.get(pk=jobs[0].pk)
        assert job.status == JobStatus.SUCCEEDED and job.payload["auto"] is True
        with tenant_a.scope():
            invoice = Invoice.objects.get(customer=customer)
            assert "due.example" in invoice.lines.get().description
        event = AuditEvent.objects.filter(action="domain.renew", object_id=str(due.pk)).get()
        assert event.changes["auto"][1] is True and event.changes["invoice"][1] == str(invoice.pk)
        assert event.actor is None and event.changes["expires_at"][1] == fresh.expires_at.isoformat()
        for other in (later, off, pending):
            assert Domain.all_tenants.get(pk=other.pk).expires_at == other.expires_at

        # The sweep again: the period is renewed, nothing more is stored.
        with django_capture_on_commit_callbacks(execute=True):
            assert services.domains_auto_renew(today=today) == []
        # The same job run a second time (a lost worker's retry): it renews nothing more.
        Job.all_tenants.filter(pk=job.pk).update(status=JobStatus.PENDING)
        assert run_job(job.pk) == "succeeded"
        assert "renewed already" in Job.all_tenants.get(pk=job.pk).result["skipped"]
        assert Domain.all_tenants.get(pk=due.pk).expires_at == fresh.expires_at
        assert Invoice.all_tenants.filter(customer=customer).count() == 1
        # A manual renewal of the period the automatic one renewed already is a no-op job too.
        with tenant_a.scope():
            stale = Job.all_tenants.create(tenant=tenant_a.tenant, type="domain.renew",
                                           payload={"domain": str(due.pk), "years": 1,
                                                    "from_expiry": due.expires_at.isoformat(),
                                                    "today": today.isoformat(), "auto": False})  # fmt: skip
        run_job(stale.pk)
        assert Domain.all_tenants.get(pk=due.pk).expires_at == fresh.expires_at

    def test_auto_renew_skips_a_domain_whose_auto_renew_was_turned_off(self, tenant_a):
        today = date(2026, 6, 1)
        domain = _active(tenant_a, "flip.example", today + timedelta(days=3))
        jobs = services.domains_auto_renew(today=today)  # stored, not run (no commit here)
        Domain.all_tenants.filter(pk=domain.pk).update(auto_renew=False)
        assert run_job(jobs[0].pk) == "succeeded"
        assert Job.all_tenants.get(pk=jobs[0].pk).result == {"skipped": "auto-renew was turned off"}
        assert Domain.all_tenants.get(pk=domain.pk).expires_at == domain.expires_at

    def test_a_refused_renewal_fails_the_job_and_says_why(self, tenant_a, refusing_registrar,
                                                          django_capture_on_commit_callbacks):  # fmt: skip
        domain = domain_in(tenant_a, "refused.example", registrar="refusing", expires_at=date(2030, 1, 1))
        client = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url(domain, "renew"), {"years": 1})
        assert response.status_code == 202
        assert Job.all_tenants.get(pk=response.json()["job"]["id"]).status == JobStatus.FAILED
        body = client.get(url(domain)).json()
        assert body["registrar_state"] == "error"
        assert "clientRenewProhibited" in body["last_error"] and body["expires_at"] == "2030-01-01"
        again = client.post(url(domain, "renew"), {"years": 1})
        assert again.status_code == 409 and again.json()["code"] == "renewal_failed"

    def test_nameservers_change_through_a_job(self, tenant_a, django_capture_on_commit_callbacks):
        domain = domain_in(tenant_a, "ns.example", nameservers=["ns1.old.example"])
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        # Stored, not run yet: the answer shows what is asked.
        queued = client.patch(url(domain), {"nameservers": ["ns1.new.example", "ns2.new.example"]}, format="json")
        assert queued.status_code == 200
        assert queued.json()["pending_nameservers"] == ["ns1.new.example", "ns2.new.example"]
        assert queued.json()["job"]["type"] == "domain.nameservers" and queued.json()["registrar_state"] == "pending"
        # A later change wins whatever order the jobs run in: each sends what is wanted when it runs.
        with django_capture_on_commit_callbacks(execute=True):
            assert client.patch(url(domain), {"nameservers": ["ns3.new.example"]}, format="json").status_code == 200
        done = client.get(url(domain)).json()
        assert done["nameservers"] == ["ns3.new.example"] and done["pending_nameservers"] is None
        assert run_job(queued.json()["job"]["id"]) == "succeeded"
        assert Domain.all_tenants.get(pk=domain.pk).nameservers == ["ns3.new.example"]


@pytest.mark.django_db
def test_registrar_jobs_are_audited_as_the_systems_act_even_inside_a_request(tenant_a):
    """Jobs run in-process (MPANEL_JOBS_EAGER) when the request that stored them commits, so the
    request's actor is current while they write: their audit events still name no actor."""
    domain = domain_in(tenant_a, "system.example", nameservers=["ns1.host.example"])
    token = context.activate(context.RequestContext(actor=tenant_a.owner, via="api"))
    try:
        with tenant_a.scope():
            services.apply_registration(domain_id=domain.pk, years=1, expires_at=None)
            services.domain_update(domain=domain, data={"nameservers": ["ns2.host.example"]})
            services.apply_nameservers(domain_id=domain.pk)
            services.domain_transfer_out(domain=domain)
            services.apply_transfer_out(domain_id=domain.pk)
    finally:
        context.reset(token)
    events = {e.action: e for e in AuditEvent.objects.filter(object_id=str(domain.pk))}
    for action in ("domain.register", "domain.nameservers", "domain.transfer_out"):
        assert events[action].actor is None and events[action].actor_email == "", action
    assert events["domain.register"].changes["registrar_state"] == ["pending", "ok"]
    assert events["domain.transfer_out"].changes["status"] == ["pending_verification", "transferred_out"]
    for action in ("domain.update", "domain.transfer_out.request"):  # the request's own acts name it
        assert events[action].actor == tenant_a.owner, action


@pytest.mark.django_db(transaction=True)
def test_overlapping_auto_renew_sweeps_renew_each_period_once(tenant_a):
    """Eight sweeps at once on PostgreSQL (their jobs run in-process as each commits): every due
    domain is renewed by exactly one year, billed once, with one job per period."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    today = date(2026, 6, 1)
    customer = customer_in(tenant_a)
    domains = [_active(tenant_a, f"race{i}.example", today + timedelta(days=i + 1), customer=customer,
                       renewal_price=Decimal("5.00")) for i in range(3)]  # fmt: skip
    errors = run_parallel(lambda _: services.domains_auto_renew(today=today), list(range(8)))
    assert errors == []
    for domain in domains:
        assert Domain.all_tenants.get(pk=domain.pk).expires_at == add_years(domain.expires_at, 1)
        jobs = Job.all_tenants.filter(type="domain.renew", object_id=str(domain.pk))
        assert jobs.count() == 1 and jobs.get().status == JobStatus.SUCCEEDED
    assert Invoice.all_tenants.filter(customer=customer).count() == 3


@pytest.mark.django_db
def test_the_beat_schedule_runs_the_auto_renew_sweep(tenant_a, settings, monkeypatch):
    """CELERY_BEAT_SCHEDULE (which Celery beat and the embedded `manage.py run_jobs` both read) names
    the registered task that stores the renewals."""
    from apps.jobs import services as job_services
    from mpanel.celery import app

    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    entry = settings.CELERY_BEAT_SCHEDULE["domains-auto-renew"]
    assert isinstance(entry["schedule"], float)  # run_jobs embeds only interval schedules
    app.loader.import_default_modules()
    due = _active(tenant_a, "beat.example", date.today() + timedelta(days=3))
    assert app.tasks[entry["task"]]() == 1
    assert Job.all_tenants.filter(type="domain.renew", object_id=str(due.pk)).count() == 1
