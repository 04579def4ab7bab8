"""A ``domain`` product sold through billing: the paid first invoice registers the domain (through the
EPP driver, against the session recorded from the RFCs) after making its zone with the tenant's
nameservers; a paid renewal invoice renews it; a registration the registry refuses refunds the
customer's credit (the real credit-note and ledger services) or keeps the payment for staff to
retry, as the tenant chose."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from apps.billing.models import CreditNote, Invoice, InvoiceStatus, SubscriptionStatus
from apps.billing.services import payments, subscriptions
from apps.billing.services.billing_run import billing_run
from apps.billing.services.credit import credit_balance
from apps.catalog.services import product_create
from apps.dns.models import Record, Zone
from apps.domains import provisioning, services
from apps.domains.models import Domain, DomainStatus, FailedRegistration, RegistrarStatus
from apps.jobs.models import Job, JobStatus
from apps.jobs.services import job_retry, run_job
from tests.billing_support import customer_of
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401
from tests.hosting.test_dns import dns_node
from tests.hosting.test_domains_epp import D, E, epp_tenant, serve  # noqa: F401

NAMESERVERS = ["ns1.tenant-a.example", "ns2.tenant-a.example"]


def sell(fx, *, cycle: str = "annual", domain: str = "example.com", product_config: dict | None = None, pay=True):
    """A subscription of a ``domain`` product for ``domain``, its first invoice paid by hand."""
    with fx.scope():
        customer = customer_of(fx)
        if not customer.city:
            customer.city, customer.country = "Dulles", "US"
            customer.save()
        product = product_create(tenant=fx.tenant, data={
            "name": "Domain .com", "slug": f"domain-com-{cycle}", "type": "domain",
            "config": {"registrar": "epp", **(product_config or {})},
            "prices": [{"currency": "EUR", "cycle": cycle, "amount": Decimal("12.00"), "setup_fee": Decimal(0)}],
        })  # fmt: skip
        sub = subscriptions.subscription_create(tenant=fx.tenant, customer=customer, product=product, cycle=cycle,
                                                config={"domain": domain})  # fmt: skip
        if pay:
            invoice = Invoice.objects.get(lines__subscription_charge__subscription=sub)
            payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="cash")
        sub.refresh_from_db()
    return sub


def run(fx, job_type: str) -> list[str]:
    with fx.scope():
        ids = list(Job.objects.filter(type=job_type, status=JobStatus.PENDING).values_list("pk", flat=True))
    return [run_job(pk) for pk in ids]


def tenant_with_epp(fx, server, policy=FailedRegistration.REFUND):
    dns_node(fx)
    epp_tenant(fx, server, nameservers=NAMESERVERS, on_failed_registration=policy)


@pytest.mark.django_db
class TestDomainProvisioning:
    def test_a_paid_registration_makes_the_zone_and_registers_with_the_tenants_nameservers(self, tenant_a, serve):  # noqa: F811
        server = serve()
        tenant_with_epp(tenant_a, server)
        sub = sell(tenant_a)
        assert sub.status == SubscriptionStatus.ACTIVE
        assert run(tenant_a, "subscription.activate") == ["succeeded"]
        with tenant_a.scope():
            zone = Zone.objects.get(name="example.com")
            ns = sorted(r.content for r in Record.objects.filter(zone=zone, type="NS", name="@"))
            domain = Domain.objects.get(name="example.com")
        assert ns == [f"{n}." for n in NAMESERVERS] and zone.soa_mname == NAMESERVERS[0]
        assert domain.subscription_id == sub.pk and domain.customer_id == sub.customer_id
        # The subscription bills the renewals: the domain's own auto-renew and price stay off.
        assert domain.auto_renew is False and domain.renewal_price is None
        assert run(tenant_a, "domain.register") == ["succeeded"]
        domain.refresh_from_db()
        assert (domain.registered_at, domain.expires_at) == (date(1999, 4, 3), date(2001, 4, 3))
        assert domain.status == DomainStatus.ACTIVE and domain.nameservers == NAMESERVERS
        create = server.request("domain:create").find(f"{E}command/{E}create/{D}create")
        assert [h.text for h in create.iter(f"{D}hostObj")] == NAMESERVERS
        assert create.findtext(f"{D}period") == "1"
        # Running the activation again changes nothing.
        with tenant_a.scope():
            assert provisioning.activate(sub) == {"domain": str(domain.pk), "created": False}
        assert Domain.all_tenants.filter(name="example.com").count() == 1

    def test_the_zone_answers_from_powerdns(self, tenant_a, serve, pdns_node_env):  # noqa: F811
        tenant_with_epp(tenant_a, serve())
        sell(tenant_a)
        assert run(tenant_a, "subscription.activate") == ["succeeded"]
        assert run(tenant_a, "dns.zone.sync") == ["succeeded"]
        assert pdns_node_env.ask("example.com.", "NS") == [f"{n}." for n in NAMESERVERS]

    def test_a_paid_renewal_renews_at_the_registry(self, tenant_a, serve):  # noqa: F811
        server = serve()
        tenant_with_epp(tenant_a, server)
        sub = sell(tenant_a, cycle="biennial")
        run(tenant_a, "subscription.activate")
        assert run(tenant_a, "domain.register") == ["succeeded"]
        assert server.request("domain:create").findtext(f"{E}command/{E}create/{D}create/{D}period") == "2"
        billing_run(on=sub.current_period_end)
        with tenant_a.scope():
            renewal = Invoice.objects.filter(lines__subscription_charge__subscription=sub).exclude(
                status=InvoiceStatus.PAID).get()  # fmt: skip
            payments.payment_record(invoice=renewal, amount=renewal.amount_due, method="cash")
            # Paying again (a replayed payment, a second hook run) stores no second renewal.
            services.domain_renew(domain=Domain.objects.get(subscription=sub), years=2)
        assert run(tenant_a, "domain.renew") == ["succeeded"]
        domain = Domain.all_tenants.get(subscription=sub)
        assert domain.expires_at == date(2005, 4, 3)
        renew = server.request("domain:renew").find(f"{E}command/{E}renew/{D}renew")
        assert renew.findtext(f"{D}curExpDate") == "2001-04-03" and renew.findtext(f"{D}period") == "2"
        assert server.commands.count("domain:renew") == 1
        # No invoice of the domain's own: the subscription billed it.
        assert Invoice.all_tenants.filter(customer=sub.customer).count() == 2

    def test_a_refused_registration_refunds_to_credit_and_cancels(self, tenant_a, serve):  # noqa: F811
        tenant_with_epp(tenant_a, serve(domain_create="error-2302.xml"), FailedRegistration.REFUND)
        sub = sell(tenant_a)
        with tenant_a.scope():
            paid = Invoice.objects.get(lines__subscription_charge__subscription=sub)
        assert credit_balance(customer=sub.customer, currency="EUR") == 0
        run(tenant_a, "subscription.activate")
        assert run(tenant_a, "domain.register") == ["failed"]
        sub.refresh_from_db()
        paid.refresh_from_db()
        assert sub.status == SubscriptionStatus.CANCELLED
        assert credit_balance(customer=sub.customer, currency="EUR") == paid.amount_paid > 0
        note = CreditNote.all_tenants.get(invoice=paid)
        assert note.credited_to_balance == paid.amount_paid and "2302 Object exists" in note.reason
        domain = Domain.all_tenants.get(subscription=sub)
        assert domain.registrar_state == RegistrarStatus.ERROR and domain.expires_at is None
        assert "Refunded to the customer's credit" in domain.last_error and note.number in domain.last_error
        # The cancellation's job finds nothing registered to undo.
        assert run(tenant_a, "subscription.cancel") == ["succeeded"]
        # Once only: the same failure reported again refunds nothing more.
        provisioning.registration_failed(domain.pk, "again")
        assert credit_balance(customer=sub.customer, currency="EUR") == paid.amount_paid
        assert CreditNote.all_tenants.filter(invoice=paid).count() == 1

    def test_a_refused_registration_keeps_the_payment_for_a_retry(self, tenant_a, serve):  # noqa: F811
        server = serve(domain_create="error-2302.xml")
        tenant_with_epp(tenant_a, server, FailedRegistration.RETRY)
        sub = sell(tenant_a)
        run(tenant_a, "subscription.activate")
        assert run(tenant_a, "domain.register") == ["failed"]
        sub.refresh_from_db()
        assert sub.status == SubscriptionStatus.ACTIVE
        assert credit_balance(customer=sub.customer, currency="EUR") == 0
        assert not CreditNote.all_tenants.exists()
        domain = Domain.all_tenants.get(subscription=sub)
        assert domain.registrar_state == RegistrarStatus.ERROR and "2302 Object exists" in domain.last_error
        # Staff fix the cause (here: the registry accepts now) and retry the job.
        server.answers["domain:create"] = "domain-create.xml"
        with tenant_a.scope():
            job = Job.objects.get(type="domain.register")
            job_retry(job=job)
        assert run_job(job.pk) == "succeeded"
        domain.refresh_from_db()
        assert domain.registrar_state == RegistrarStatus.OK and domain.expires_at == date(2001, 4, 3)

    def test_a_registry_fault_is_retried_before_the_refund(self, tenant_a, serve):  # noqa: F811
        tenant_with_epp(tenant_a, serve(domain_create="error-2400.xml"), FailedRegistration.REFUND)
        sub = sell(tenant_a)
        run(tenant_a, "subscription.activate")
        assert run(tenant_a, "domain.register") == ["pending"]
        sub.refresh_from_db()
        assert sub.status == SubscriptionStatus.ACTIVE and not CreditNote.all_tenants.exists()
        with tenant_a.scope():
            job = Job.objects.get(type="domain.register")
        Job.all_tenants.filter(pk=job.pk).update(attempts=job.max_attempts - 1, run_after=job.created_at)
        assert run_job(job.pk) == "failed"
        sub.refresh_from_db()
        assert sub.status == SubscriptionStatus.CANCELLED and CreditNote.all_tenants.count() == 1

    @pytest.mark.parametrize(
        ("cycle", "config", "says"),
        [("monthly", {"domain": "example.com"}, "whole years"), ("annual", {"domain": "not a name"}, "valid domain"),
         ("annual", {}, "valid domain")],
    )  # fmt: skip
    def test_a_sale_that_cannot_be_registered_fails_its_activation_clearly(
        self,
        tenant_a,
        serve,  # noqa: F811
        cycle,
        config,
        says,
    ):
        tenant_with_epp(tenant_a, serve())
        sub = sell(tenant_a, cycle=cycle, pay=False)
        with tenant_a.scope():
            sub.config = config
            sub.save()
            invoice = Invoice.objects.get(lines__subscription_charge__subscription=sub)
            payments.payment_record(invoice=invoice, amount=invoice.amount_due, method="cash")
        assert run(tenant_a, "subscription.activate") == ["failed"]
        with tenant_a.scope():
            assert says in Job.objects.get(type="subscription.activate").last_error
        assert not Domain.all_tenants.exists() and not Zone.all_tenants.exists()

    def test_suspension_and_cancellation_leave_the_registration_alone(self, tenant_a, serve):  # noqa: F811
        tenant_with_epp(tenant_a, serve())
        sub = sell(tenant_a)
        run(tenant_a, "subscription.activate")
        run(tenant_a, "domain.register")
        with tenant_a.scope():
            subscriptions.subscription_suspend(sub=sub)
        assert run(tenant_a, "subscription.suspend") == ["succeeded"]
        with tenant_a.scope():
            subscriptions.subscription_cancel(sub=sub)
        assert run(tenant_a, "subscription.cancel") == ["succeeded"]
        domain = Domain.all_tenants.get(subscription=sub)
        assert domain.status == DomainStatus.ACTIVE and domain.expires_at == date(2001, 4, 3)
        assert domain.auto_renew is False

    def test_settings_refuse_bad_input(self, tenant_a):
        from apps.common.exceptions import InvalidInput

        refused = [({"nameservers": ["ns1.only.example"]}, "nameservers"), ({"registrar": "nope"}, "registrar"),
                   ({"epp_port": 70000}, "epp_port"), ({"epp_host": "bad host!"}, "epp_host"),
                   ({"epp_client_cert": "not pem"}, "epp_client_cert"),
                   ({"on_failed_registration": "maybe"}, "on_failed_registration")]  # fmt: skip
        for data, field in refused:
            with tenant_a.scope(), pytest.raises(InvalidInput) as exc:
                services.domain_settings_update(tenant=tenant_a.tenant, data=data)
            assert exc.value.field == field
        with tenant_a.scope():
            assert services.tenant_nameservers(tenant_a.tenant) == ["ns1.mpanel.invalid", "ns2.mpanel.invalid"]


@pytest.mark.django_db
def test_a_name_another_account_holds_fails_the_activation_for_good(tenant_a, tenant_b, serve):  # noqa: F811
    from apps.dns import services as dns_services

    with tenant_b.scope():
        dns_services.zone_create(tenant=tenant_b.tenant, name="example.com", node=dns_node(tenant_b, "dns-b"))
    tenant_with_epp(tenant_a, serve())
    sell(tenant_a)
    assert run(tenant_a, "subscription.activate") == ["failed"]  # at once, not retried
    with tenant_a.scope():
        assert "held by another account" in Job.objects.get(type="subscription.activate").last_error
    assert not Domain.all_tenants.exists()
