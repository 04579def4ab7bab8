"""Saved cards (Stripe SetupIntents on the tenant's connected account) and renewals charged on them.

Stripe's servers cannot be reached here: the official library talks to the local replay of
tests/billing_support.py, which answers with Stripe's documented objects (Customer, Checkout Session
in setup mode, SetupIntent, PaymentMethod, PaymentIntent, and the ``card_error`` a refused
off-session charge answers) and records what we sent (``Stripe-Account``, ``Idempotency-Key``,
``off_session``). Events are Connect deliveries signed by stripe-python's own code, as in
test_connect.py.
"""

from __future__ import annotations

import itertools

import pytest
from django.core import mail
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.api import SavedPaymentMethodViewSet
from apps.billing.models import CardCharge, Payment, PaymentStatus, SavedPaymentMethod, StripeCustomer, WebhookEvent
from apps.billing.services import cards, invoices, tenant_settings
from apps.common.exceptions import Conflict
from apps.customers.models import Customer
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.billing_support import (
    connect_event,
    connected,
    customer_of,
    draft,
    fresh,
    payment_intent,
    payment_method_object,
    post_connect_event,
    setup_intent_object,
)
from tests.conftest import client_for

LIST = "/api/v1/billing/payment-methods/"
_n = itertools.count(1)


def start_setup(fx, customer):
    with fx.scope():
        return cards.setup_start(
            customer=customer, success_url="https://portal.test/ok", cancel_url="https://portal.test/cancel"
        )


def save_card(fx, stripe_api, account: str, customer, *, brand="visa", last4="4242", exp=(8, 2030), event_id=None):
    """The whole round: our Checkout page in setup mode, the customer enters a card at Stripe, Stripe
    sends ``setup_intent.succeeded`` to the Connect endpoint."""
    link = start_setup(fx, customer)
    session = stripe_api.sessions[(account, link["id"])]
    n = next(_n)
    pm_id = f"pm_1Card{n:010d}"
    stripe_api.payment_methods[(account, pm_id)] = payment_method_object(
        pm_id, session["customer"], brand=brand, last4=last4, exp_month=exp[0], exp_year=exp[1]
    )
    intent = setup_intent_object(session["setup_intent"], session["customer"], pm_id, session["metadata"])
    response = post_connect_event(connect_event(event_id or f"evt_seti_{n}", "setup_intent.succeeded", intent, account))
    assert response.status_code == 200, response.content
    return pm_id, response.json()["status"]


def issue(fx, customer, amount="10.00"):
    with fx.scope():
        invoice = draft(fx, customer=customer, lines=[{"description": "Hosting renewal", "quantity": "1",
                                                       "unit_price": amount, "tax_rate": "0"}])  # fmt: skip
        return invoices.invoice_issue(invoice=invoice)


@pytest.mark.django_db
class TestSavingACard:
    def test_setup_then_webhook_lists_the_card_on_the_tenants_account(self, tenant_a, stripe_api):
        account = connected(tenant_a, stripe_api, "acct_1CardsA00000").account_id
        customer = customer_of(tenant_a)
        link = start_setup(tenant_a, customer)
        assert link["url"].startswith("https://checkout.stripe.com/")
        made = next(r for r in stripe_api.sent if r["path"] == "/v1/customers")
        assert made["account"] == account and made["form"]["metadata[mpanel_customer_id]"] == str(customer.pk)
        setup = next(r for r in stripe_api.sent if r["path"] == "/v1/checkout/sessions")
        assert setup["account"] == account and setup["form"]["mode"] == "setup"
        assert setup["form"]["payment_method_types[0]"] == "card" and setup["idempotency_key"]
        assert setup["form"]["customer"] == StripeCustomer.all_tenants.get(customer=customer).stripe_customer_id
        assert setup["form"]["success_url"] == "https://portal.test/ok"
        # Nothing is listed until Stripe says the card is saved.
        assert not SavedPaymentMethod.all_tenants.exists()
        pm_id, status = save_card(tenant_a, stripe_api, account, customer, brand="mastercard", last4="4444")
        assert status == "processed"
        card = SavedPaymentMethod.all_tenants.get()
        assert (card.customer_id, card.account, card.stripe_payment_method_id) == (customer.pk, account, pm_id)
        assert (card.brand, card.last4, card.exp_month, card.exp_year, card.is_default) == (
            "mastercard", "4444", 8, 2030, True,
        )  # fmt: skip
        assert next(r for r in stripe_api.sent if r["path"] == f"/v1/payment_methods/{pm_id}")["account"] == account
        member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        rows = member.get(LIST, {"customer": str(customer.pk)}).json()["results"]
        assert [(r["last4"], r["is_default"], r["expiry"], r["label"]) for r in rows] == [
            ("4444", True, "08/2030", "Mastercard •••• 4444")
        ]
        assert AuditEvent.objects.filter(action="payment_method.add", tenant=tenant_a.tenant).exists()
        # A second card: one Stripe Customer (made once), and the first card stays the default.
        save_card(tenant_a, stripe_api, account, customer, last4="1881")
        assert len([r for r in stripe_api.sent if r["path"] == "/v1/customers"]) == 1
        assert SavedPaymentMethod.all_tenants.filter(customer=customer, is_default=True).get().last4 == "4444"

    def test_the_same_event_twice_lists_one_card(self, tenant_a, stripe_api):
        account = connected(tenant_a, stripe_api, "acct_1CardsTwice0").account_id
        customer = customer_of(tenant_a)
        link = start_setup(tenant_a, customer)
        session = stripe_api.sessions[(account, link["id"])]
        stripe_api.payment_methods[(account, "pm_1Twice")] = payment_method_object("pm_1Twice", session["customer"])
        intent = setup_intent_object(session["setup_intent"], session["customer"], "pm_1Twice", session["metadata"])
        for event_id in ("evt_twice", "evt_twice", "evt_twice_other_id"):
            assert (
                post_connect_event(connect_event(event_id, "setup_intent.succeeded", intent, account)).json()["status"]
                == "processed"
            )
        assert SavedPaymentMethod.all_tenants.count() == 1
        assert WebhookEvent.objects.filter(event_id="evt_twice").count() == 1

    def test_a_webhook_of_as_account_cannot_attach_a_card_to_bs_customer(self, tenant_a, tenant_b, stripe_api):
        acct_a = connected(tenant_a, stripe_api, "acct_1CardAttack0").account_id
        acct_b = connected(tenant_b, stripe_api, "acct_1CardVictim0").account_id
        victim = customer_of(tenant_b, email="victim@example.com")
        link = start_setup(tenant_b, victim)
        session_b = stripe_api.sessions[(acct_b, link["id"])]
        stripe_api.payment_methods[(acct_a, "pm_1Attacker")] = payment_method_object(
            "pm_1Attacker", session_b["customer"]
        )
        # On A's account, naming B's Stripe Customer and B's customer id in the metadata.
        intent = setup_intent_object("seti_1Attack", session_b["customer"], "pm_1Attacker", session_b["metadata"])
        response = post_connect_event(connect_event("evt_attack", "setup_intent.succeeded", intent, acct_a))
        assert response.json()["status"] == "unmatched"
        stored = WebhookEvent.objects.get(event_id="evt_attack")
        assert stored.tenant_id == tenant_a.tenant.pk and "nothing was saved" in stored.error
        # A's own Stripe Customer with B's customer id in the metadata: refused too.
        own = customer_of(tenant_a, email="attacker@example.com")
        link_a = start_setup(tenant_a, own)
        session_a = stripe_api.sessions[(acct_a, link_a["id"])]
        stripe_api.payment_methods[(acct_a, "pm_1Attacker2")] = payment_method_object(
            "pm_1Attacker2", session_a["customer"]
        )
        forged = setup_intent_object("seti_1Attack2", session_a["customer"], "pm_1Attacker2",
                                     {"mpanel_customer_id": str(victim.pk)})  # fmt: skip
        assert (
            post_connect_event(connect_event("evt_attack2", "setup_intent.succeeded", forged, acct_a)).json()["status"]
            == "unmatched"
        )
        # A platform event (no account) binds to no tenant: it saves nothing either.
        plain = {k: v for k, v in connect_event("evt_plain", "setup_intent.succeeded", intent, acct_b).items()
                 if k != "account"}  # fmt: skip
        assert post_connect_event(plain).json()["status"] == "unmatched"
        assert not SavedPaymentMethod.all_tenants.exists()

    def test_a_tenant_without_a_ready_account_offers_no_cards(self, tenant_a, tenant_b, stripe_api):
        connected(tenant_a, stripe_api, "acct_1CardsNotYet", charges=False)
        for fx in (tenant_a, tenant_b):
            with pytest.raises(Conflict) as refused:
                start_setup(fx, customer_of(fx))
            assert refused.value.code == "cards_not_offered"
        # Cards are offered with "stripe" among the tenant's payment methods only.
        row = connected(tenant_b, stripe_api, "acct_1CardsNoStripe")
        with tenant_b.scope():
            tenant_settings.settings_update(tenant=tenant_b.tenant, data={"payment_methods": ["bank_transfer"]})
        assert cards.cards_account(tenant_b.tenant) is None and row.charges_enabled
        assert not [r for r in stripe_api.sent if r["path"] == "/v1/checkout/sessions"]


@pytest.mark.django_db
class TestDefaultAndRemove:
    def test_set_default_and_remove_through_the_staff_api(self, tenant_a, stripe_api):
        account = connected(tenant_a, stripe_api, "acct_1CardsApi000").account_id
        customer = customer_of(tenant_a)
        first, _ = save_card(tenant_a, stripe_api, account, customer, last4="1111")
        second, _ = save_card(tenant_a, stripe_api, account, customer, last4="2222")
        card_2 = SavedPaymentMethod.all_tenants.get(stripe_payment_method_id=second)
        url = reverse("saved-payment-method-make-default", kwargs={"pk": card_2.pk})
        member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        assert member.post(url).status_code == 403
        billing = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
        answer = billing.post(url)
        assert answer.status_code == 200 and answer.json()["is_default"] is True
        assert list(SavedPaymentMethod.all_tenants.filter(is_default=True).values_list("last4", flat=True)) == ["2222"]
        # Removing the default: detached at Stripe on the tenant's account, the other card takes over.
        detail = reverse("saved-payment-method-detail", kwargs={"pk": card_2.pk})
        assert member.delete(detail).status_code == 403
        assert billing.delete(detail).status_code == 204
        detach = next(r for r in stripe_api.sent if r["path"] == f"/v1/payment_methods/{second}/detach")
        assert detach["account"] == account
        left = SavedPaymentMethod.all_tenants.get()
        assert left.stripe_payment_method_id == first and left.is_default
        assert AuditEvent.objects.filter(action="payment_method.remove", tenant=tenant_a.tenant).exists()
        # Stripe's own payment_method.detached for the card we removed changes nothing more.
        pm = payment_method_object(second, None)
        assert (
            post_connect_event(connect_event("evt_det", "payment_method.detached", pm, account)).json()["status"]
            == "processed"
        )
        assert SavedPaymentMethod.all_tenants.count() == 1

    def test_detached_and_updated_at_stripe(self, tenant_a, stripe_api):
        account = connected(tenant_a, stripe_api, "acct_1CardsEvt000").account_id
        customer = customer_of(tenant_a)
        pm_id, _ = save_card(tenant_a, stripe_api, account, customer)
        renewed = payment_method_object(pm_id, "cus_x", exp_month=9, exp_year=2032)
        post_connect_event(connect_event("evt_upd", "payment_method.updated", renewed, account))
        card = SavedPaymentMethod.all_tenants.get()
        assert (card.exp_month, card.exp_year) == (9, 2032)
        post_connect_event(connect_event("evt_gone", "payment_method.detached", payment_method_object(pm_id, None),
                                         account))  # fmt: skip
        assert not SavedPaymentMethod.all_tenants.exists()

    def test_another_tenants_card_is_a_404(self, tenant_a, tenant_b, stripe_api):
        account = connected(tenant_a, stripe_api, "acct_1CardsIso000").account_id
        save_card(tenant_a, stripe_api, account, customer_of(tenant_a))
        card = SavedPaymentMethod.all_tenants.get()
        other = client_for(tenant_b.users[Role.OWNER], tenant_b.tenant)
        assert other.get(reverse("saved-payment-method-detail", kwargs={"pk": card.pk})).status_code == 404
        assert other.delete(reverse("saved-payment-method-detail", kwargs={"pk": card.pk})).status_code == 404
        assert other.post(reverse("saved-payment-method-make-default", kwargs={"pk": card.pk})).status_code == 404
        assert other.get(LIST).json()["results"] == []
        assert SavedPaymentMethod.all_tenants.count() == 1


@pytest.mark.django_db
class TestRenewalsChargedOnTheDefaultCard:
    def test_an_issued_invoice_is_charged_once_even_when_the_job_runs_twice(
        self, tenant_a, stripe_api, django_capture_on_commit_callbacks
    ):
        account = connected(tenant_a, stripe_api, "acct_1Renewal0000", fee="2").account_id
        customer = customer_of(tenant_a)
        pm_id, _ = save_card(tenant_a, stripe_api, account, customer)
        with django_capture_on_commit_callbacks(execute=True):
            invoice = issue(tenant_a, customer, "25.00")
        charges = [r for r in stripe_api.sent if r["path"] == "/v1/payment_intents"]
        assert len(charges) == 1
        sent = charges[0]
        assert sent["account"] == account and sent["idempotency_key"] == f"mpanel-autocharge-{invoice.pk}"
        form = sent["form"]
        assert (form["off_session"], form["confirm"], form["amount"], form["currency"]) == (
            "true",
            "true",
            "2500",
            "eur",
        )
        assert form["payment_method"] == pm_id and form["application_fee_amount"] == "50"
        assert form["metadata[mpanel_invoice_id]"] == str(invoice.pk)
        assert fresh(invoice).status == "paid"
        payment = Payment.all_tenants.get()
        charge = CardCharge.all_tenants.get()
        assert charge.status == "succeeded" and payment.provider_ref == charge.payment_intent
        assert payment.provider_account == account and payment.amount == fresh(invoice).total
        # The job again: nothing is charged twice.
        with tenant_a.scope():
            cards.autocharge_run(charge.pk)
        # Even a run that lost the first answer (the row still pending) sends the same key: the same charge.
        CardCharge.all_tenants.filter(pk=charge.pk).update(status="pending")
        with tenant_a.scope():
            cards.autocharge_run(charge.pk)
        keys = {r["idempotency_key"] for r in stripe_api.sent if r["path"] == "/v1/payment_intents"}
        assert keys == {f"mpanel-autocharge-{invoice.pk}"} and len(stripe_api.intents) == 1
        # And Stripe's webhook for the same payment intent records nothing more.
        minor = 2500
        event = payment_intent(charge.payment_intent, invoice, minor)
        assert (
            post_connect_event(connect_event("evt_pi_ok", "payment_intent.succeeded", event, account)).json()["status"]
            == "processed"
        )
        assert Payment.all_tenants.count() == 1 and fresh(invoice).amount_paid == fresh(invoice).total

    @pytest.mark.parametrize("code", ["authentication_required", "card_declined"])
    def test_a_refused_card_leaves_the_invoice_open_and_emails_the_pay_link(
        self, code, tenant_a, stripe_api, django_capture_on_commit_callbacks
    ):
        account = connected(tenant_a, stripe_api, "acct_1Declined000").account_id
        customer = customer_of(tenant_a)
        pm_id, _ = save_card(tenant_a, stripe_api, account, customer, last4="3184")
        stripe_api.declines[pm_id] = code
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            invoice = issue(tenant_a, customer)
        after = fresh(invoice)
        assert after.status == "open" and after.amount_due == after.total
        charge = CardCharge.all_tenants.get()
        assert charge.status == "failed" and charge.failure_code == code and charge.payment_intent.startswith("pi_")
        failed = Payment.all_tenants.get()
        assert failed.status == PaymentStatus.FAILED and failed.provider_ref == charge.payment_intent
        letters = [m for m in mail.outbox if "could not charge your card" in m.subject]
        assert len(letters) == 1, [m.subject for m in mail.outbox]
        body = letters[0].body
        assert invoice.number in body and "3184" in body and f"/portal/{tenant_a.tenant.slug}/i/" in body
        # Again (a retried job, Stripe's payment_failed event): no second charge, no second email.
        with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
            cards.autocharge_run(charge.pk)
        intent = stripe_api.intents[(account, charge.payment_intent)]
        with django_capture_on_commit_callbacks(execute=True):
            post_connect_event(connect_event("evt_pi_fail", "payment_intent.payment_failed",
                                             {**intent, "status": "requires_payment_method"}, account))  # fmt: skip
        assert len([m for m in mail.outbox if "could not charge your card" in m.subject]) == 1
        assert len([r for r in stripe_api.sent if r["path"] == "/v1/payment_intents"]) == 1
        assert fresh(invoice).status == "open"

    def test_no_card_no_account_or_cards_not_offered_charge_nothing(
        self, tenant_a, tenant_b, stripe_api, django_capture_on_commit_callbacks
    ):
        account = connected(tenant_a, stripe_api, "acct_1NoCharge000").account_id
        with_card = customer_of(tenant_a, email="card@example.com")
        save_card(tenant_a, stripe_api, account, with_card)
        without = customer_of(tenant_a, email="nocard@example.com")
        with django_capture_on_commit_callbacks(execute=True):
            issue(tenant_a, without)
            issue(tenant_b, customer_of(tenant_b))
        assert not CardCharge.all_tenants.exists()
        with tenant_a.scope():
            tenant_settings.settings_update(tenant=tenant_a.tenant, data={"payment_methods": ["bank_transfer"]})
        with django_capture_on_commit_callbacks(execute=True):
            issue(tenant_a, with_card)
        assert not CardCharge.all_tenants.exists()
        assert not [r for r in stripe_api.sent if r["path"] == "/v1/payment_intents"]

    def test_the_billing_run_charges_the_renewals_it_issues(
        self, tenant_a, stripe_api, django_capture_on_commit_callbacks
    ):
        account = connected(tenant_a, stripe_api, "acct_1BillingRun0").account_id
        customer = customer_of(tenant_a)
        save_card(tenant_a, stripe_api, account, customer)
        with tenant_a.scope():
            drafts = [
                {
                    "customer": customer,
                    "currency": "EUR",
                    "lines": [{"description": "Renewal", "quantity": "1", "unit_price": "8.00", "tax_rate": "0"}],
                }
            ]
            conf = tenant_settings.settings_of(tenant_a.tenant)
            with django_capture_on_commit_callbacks(execute=True):
                made = invoices.create_issued_many(tenant=tenant_a.tenant, conf=conf, drafts=drafts)
        assert fresh(made[0]).status == "paid"
        assert CardCharge.all_tenants.get().status == "succeeded"


@pytest.mark.django_db
class TestSavedPaymentMethodApi(ApiTestCase):
    viewset = SavedPaymentMethodViewSet
    basename = "saved-payment-method"
    roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER, "destroy": Role.BILLING}

    def make(self, fx, seq):
        # A card on an account the tenant does not have connected (so removing it calls no Stripe).
        customer = Customer.objects.create(name=f"Card {seq}", email=f"card{seq}@example.com", currency="EUR")
        return SavedPaymentMethod.objects.create(
            customer=customer, account="acct_1Elsewhere000", stripe_customer_id=f"cus_{seq}",
            stripe_payment_method_id=f"pm_api_{seq}_{next(_n)}", brand="visa", last4="4242", exp_month=1,
            exp_year=2031, is_default=True,
        )  # fmt: skip


@pytest.mark.django_db
def test_the_admin_shows_a_customers_saved_cards_read_only(client, tenant_a, stripe_api):
    from tests.console.test_admin_billing import operator, url

    account = connected(tenant_a, stripe_api, "acct_1CardsAdmin0").account_id
    customer = customer_of(tenant_a)
    save_card(tenant_a, stripe_api, account, customer, brand="amex", last4="0005", exp=(3, 2031))
    html = operator(client, "support").get(url(Customer, "change", customer.pk)).content.decode()
    assert 'id="customer-cards"' in html and "Amex •••• 0005" in html and "03/2031" in html and "Default" in html
