"""Stripe Connect: each tenant is paid into its own Stripe account.

Stripe's servers cannot be reached here. Outgoing calls go through the official library to a local
replay that answers with the objects Stripe documents (Account, Account Link, Checkout Session,
Refund: https://docs.stripe.com/api), and records what the library sent (the ``Stripe-Account``
header above all). Incoming events are Stripe's documented Event envelope with the top-level
``account`` that Connect webhooks carry (https://docs.stripe.com/connect/webhooks), signed by
stripe-python's own signing code with the Connect endpoint's secret, as in
tests/billing/test_billing_webhooks.py.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.models import CheckoutSession, Payment, StripeConnection, WebhookEvent
from apps.billing.services import connect, tenant_settings
from apps.tenancy.roles import Role
from tests.billing_support import (
    account_object,
    connect_event,
    connected,
    fresh,
    issued,
    payment_intent,
    post_connect_event,
)
from tests.conftest import client_for
from tests.security.test_security_tokens import bearer, token_for

CONNECT = "/api/v1/billing/stripe/connect"


@pytest.mark.django_db
class TestOnboarding:
    def test_an_admin_connects_a_new_express_account_and_gets_stripes_onboarding_link(self, tenant_a, stripe_api):
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = admin.post(CONNECT, {"country": "NL"}, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["onboarding_url"].startswith("https://connect.stripe.com/setup/")
        assert body["connected"] is True and body["status"] == "pending" and body["charges_enabled"] is False
        assert "external_account" in body["requirements_due"]
        created = next(r for r in stripe_api.requests if r[1] == "/v1/accounts")[2]
        assert created["type"] == "express" and created["country"] == "NL"
        assert created["capabilities[card_payments][requested]"] == "true"
        assert created["metadata[mpanel_tenant_id]"] == str(tenant_a.tenant.pk)
        link = next(r for r in stripe_api.requests if r[1] == "/v1/account_links")[2]
        assert link["account"] == body["account_id"] and link["type"] == "account_onboarding"
        row = StripeConnection.objects.get(tenant=tenant_a.tenant)
        assert row.account_id == body["account_id"]
        assert AuditEvent.objects.filter(action="stripe_connection.connect", tenant=tenant_a.tenant).exists()
        # Again: the same account, a fresh link (they expire within minutes), no second account.
        again = admin.post(CONNECT, {}, format="json")
        assert again.status_code == 201 and again.json()["account_id"] == body["account_id"]
        assert len([r for r in stripe_api.requests if r[1] == "/v1/accounts"]) == 1

    def test_attach_an_existing_account_and_refusals(self, tenant_a, tenant_b, stripe_api):
        stripe_api.accounts["acct_1Existing000A"] = account_object("acct_1Existing000A", type_="standard")
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        unknown = admin.post(CONNECT, {"account_id": "acct_1NotConnected0"}, format="json")
        assert unknown.status_code == 409 and not StripeConnection.objects.exists()
        assert admin.post(CONNECT, {"account_id": "sk_live_abc"}, format="json").status_code == 400
        ok = admin.post(CONNECT, {"account_id": "acct_1Existing000A"}, format="json")
        assert ok.status_code == 201 and ok.json()["account_type"] == "standard"
        # One account pays one tenant: B cannot take A's.
        other = client_for(tenant_b.users[Role.OWNER], tenant_b.tenant)
        taken = other.post(CONNECT, {"account_id": "acct_1Existing000A"}, format="json")
        assert taken.status_code == 409
        assert not StripeConnection.objects.filter(tenant=tenant_b.tenant).exists()

    def test_roles_tokens_and_other_tenants(self, tenant_a, tenant_b, stripe_api):
        connected(tenant_a, stripe_api, "acct_1RolesTest000")
        assert client_for(None, tenant_a.tenant).get(CONNECT).status_code == 401
        for role in (Role.VIEWER, Role.MEMBER):
            assert client_for(tenant_a.users[role], tenant_a.tenant).get(CONNECT).status_code == 403
        billing = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
        seen = billing.get(CONNECT)
        assert seen.status_code == 200 and seen.json()["status"] == "active"
        assert billing.post(CONNECT, {}, format="json").status_code == 403
        assert billing.delete(CONNECT).status_code == 403
        # Tenant B sees its own (none), never A's.
        theirs = client_for(tenant_b.users[Role.OWNER], tenant_b.tenant).get(CONNECT)
        assert theirs.status_code == 200 and theirs.json()["connected"] is False and theirs.json()["account_id"] is None
        # Where the money goes is changed by a signed-in person, never by an API token.
        _token, raw = token_for(tenant_a.owner, tenant_a, role=Role.OWNER)
        assert bearer(raw, tenant_a.tenant).delete(CONNECT).status_code == 403
        assert StripeConnection.objects.get(tenant=tenant_a.tenant).live

    def test_disconnect_makes_payments_manual(self, tenant_a, stripe_api):
        connected(tenant_a, stripe_api, "acct_1Disconnect00")
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = admin.delete(CONNECT)
        assert response.status_code == 200 and response.json()["status"] == "disconnected"
        assert admin.delete(CONNECT).status_code == 409
        invoice = issued(tenant_a)
        pay = admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}), {"method": "stripe"}, format="json")
        assert pay.status_code == 409 and pay.json()["code"] == "stripe_not_connected"
        manual = admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}),
                            {"method": "bank_transfer", "amount": str(invoice.total)}, format="json")  # fmt: skip
        assert manual.status_code == 200 and fresh(invoice).status == "paid"

    def test_reconnecting_after_a_disconnect_makes_a_new_account(self, tenant_a, stripe_api):
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        first = admin.post(CONNECT, {}, format="json").json()["account_id"]
        assert admin.delete(CONNECT).status_code == 200
        second = admin.post(CONNECT, {"account_type": "standard"}, format="json")
        assert second.status_code == 201 and second.json()["account_id"] != first
        keys = [r for r in stripe_api.requests if r[1] == "/v1/accounts"]
        assert len(keys) == 2
        assert StripeConnection.objects.get(tenant=tenant_a.tenant).account_id == second.json()["account_id"]

    def test_account_updated_sets_the_status_and_an_older_event_does_not_undo_it(self, tenant_a, stripe_api):
        row = connected(tenant_a, stripe_api, "acct_1Updated0000", charges=False)
        assert row.status == "pending"
        now = int(time.time())
        done = account_object(row.account_id, charges=True, payouts=True, submitted=True)
        response = post_connect_event(connect_event("evt_acc_1", "account.updated", done, row.account_id, now))
        assert response.status_code == 200 and response.json()["status"] == "processed"
        row.refresh_from_db()
        assert row.status == "active" and row.payouts_enabled and row.requirements_due == []
        stale = account_object(row.account_id)
        post_connect_event(connect_event("evt_acc_0", "account.updated", stale, row.account_id, now - 60))
        row.refresh_from_db()
        assert row.charges_enabled  # the older state changed nothing
        status = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant).get(CONNECT).json()
        assert status["charges_enabled"] and status["payouts_enabled"] and status["details_submitted"]

    def test_deauthorized_at_stripe_disconnects(self, tenant_a, stripe_api):
        row = connected(tenant_a, stripe_api, "acct_1Deauth00000")
        app = {"id": "ca_platform", "object": "application", "name": "mPanel"}
        post_connect_event(connect_event("evt_deauth", "account.application.deauthorized", app, row.account_id))
        row.refresh_from_db()
        assert not row.live and not row.charges_enabled


@pytest.mark.django_db
class TestChargesOnTheConnectedAccount:
    def test_checkout_runs_on_the_tenants_account_with_the_platform_fee(self, tenant_a, stripe_api):
        row = connected(tenant_a, stripe_api, "acct_1Checkout000", fee="2.5")
        invoice = issued(tenant_a)
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}), {"method": "stripe"}, format="json")
        assert response.status_code == 201, response.content
        _method, _path, form, account = next(r for r in stripe_api.requests if r[1] == "/v1/checkout/sessions")
        assert account == row.account_id
        minor = int(invoice.amount_due * 100)
        fee = int((Decimal(minor) * Decimal("0.025")).quantize(Decimal(1), rounding="ROUND_HALF_UP"))
        assert form["payment_intent_data[application_fee_amount]"] == str(fee)
        session = CheckoutSession.all_tenants.get()
        assert session.account == row.account_id and session.application_fee == Decimal(fee) / 100

    def test_no_fee_sends_no_fee(self, tenant_a, stripe_api):
        connected(tenant_a, stripe_api, "acct_1NoFee000000")
        invoice = issued(tenant_a)
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        assert admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}), {"method": "stripe"},
                          format="json").status_code == 201  # fmt: skip
        form = next(r for r in stripe_api.requests if r[1] == "/v1/checkout/sessions")[2]
        assert "payment_intent_data[application_fee_amount]" not in form

    def test_refusals_without_a_ready_account(self, tenant_a, tenant_b, stripe_api):
        connected(tenant_a, stripe_api, "acct_1NotReady000", charges=False)
        invoice_a, invoice_b = issued(tenant_a), issued(tenant_b)
        pay = reverse("invoice-pay", kwargs={"pk": invoice_a.pk})
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        refused = admin.post(pay, {"method": "stripe"}, format="json")
        assert refused.status_code == 409 and refused.json()["code"] == "stripe_onboarding_incomplete"
        other = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant)
        none = other.post(reverse("invoice-pay", kwargs={"pk": invoice_b.pk}), {"method": "stripe"}, format="json")
        assert none.status_code == 409 and none.json()["code"] == "stripe_not_connected"
        assert not [r for r in stripe_api.requests if r[1] == "/v1/checkout/sessions"]

    def test_a_tenant_that_does_not_offer_cards_is_refused_checkout(self, tenant_a, stripe_api):
        connected(tenant_a, stripe_api, "acct_1NoCards0000")
        with tenant_a.scope():
            tenant_settings.settings_update(tenant=tenant_a.tenant, data={"payment_methods": ["bank_transfer"]})
        invoice = issued(tenant_a)
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        refused = admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}), {"method": "stripe"}, format="json")
        assert refused.status_code == 409 and refused.json()["code"] == "payment_method_not_accepted"

    def test_a_refund_goes_back_from_the_account_the_money_went_to(self, tenant_a, stripe_api):
        row = connected(tenant_a, stripe_api, "acct_1Refunds0000", fee="1")
        invoice = issued(tenant_a)
        minor = int(invoice.total * 100)
        event = connect_event("evt_pay_r", "payment_intent.succeeded", payment_intent("pi_r1", invoice, minor),
                              row.account_id)  # fmt: skip
        assert post_connect_event(event).json()["status"] == "processed"
        payment = Payment.all_tenants.get()
        assert payment.provider_account == row.account_id
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = admin.post(reverse("payment-refund", kwargs={"pk": payment.pk}), {"amount": "5.00"}, format="json")
        assert response.status_code == 201, response.content
        _m, _p, form, account = next(r for r in stripe_api.requests if r[1] == "/v1/refunds")
        assert account == row.account_id and form["payment_intent"] == "pi_r1" and form["amount"] == "500"
        assert form["refund_application_fee"] == "true"

    def test_the_reconciler_asks_the_connected_account(self, tenant_a, stripe_api):
        from datetime import timedelta

        from django.utils import timezone

        from apps.billing.services.reconciliation import reconcile_open_sessions

        row = connected(tenant_a, stripe_api, "acct_1Reconcile00")
        invoice = issued(tenant_a)
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        link = admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}), {"method": "stripe"}, format="json")
        CheckoutSession.all_tenants.update(created_at=timezone.now() - timedelta(minutes=30))
        stripe_api.sessions[(row.account_id, link.json()["id"])].update(
            payment_status="paid", status="complete", payment_intent="pi_lost_connect"
        )
        assert reconcile_open_sessions()["paid"] == 1
        assert fresh(invoice).status == "paid"
        assert Payment.all_tenants.get().provider_account == row.account_id
        asked = [r for r in stripe_api.requests if r[0] == "GET" and "/v1/checkout/sessions/" in r[1]]
        assert asked and all(r[3] == row.account_id for r in asked)


@pytest.mark.django_db
class TestMoneyInTheRightPlace:
    """Two tenants, two connected accounts: each payment lands on its own tenant's invoice, and an
    event of tenant A's account can never touch tenant B's invoice, whatever its metadata says."""

    def test_two_tenants_two_accounts_each_payment_on_the_right_invoice(self, tenant_a, tenant_b, stripe_api):
        acct_a = connected(tenant_a, stripe_api, "acct_1TenantA00000").account_id
        acct_b = connected(tenant_b, stripe_api, "acct_1TenantB00000").account_id
        inv_a, inv_b = issued(tenant_a), issued(tenant_b)
        for evt, inv, acct, pi in (("evt_a", inv_a, acct_a, "pi_a"), ("evt_b", inv_b, acct_b, "pi_b")):
            minor = int(inv.total * 100)
            event = connect_event(evt, "payment_intent.succeeded", payment_intent(pi, inv, minor), acct)
            response = post_connect_event(event)
            assert response.status_code == 200 and response.json()["status"] == "processed", response.content
        assert fresh(inv_a).status == "paid" and fresh(inv_b).status == "paid"
        a = Payment.all_tenants.get(invoice=inv_a)
        b = Payment.all_tenants.get(invoice=inv_b)
        assert (a.tenant_id, a.provider_account) == (tenant_a.tenant.pk, acct_a)
        assert (b.tenant_id, b.provider_account) == (tenant_b.tenant.pk, acct_b)
        assert WebhookEvent.objects.get(event_id="evt_a").tenant_id == tenant_a.tenant.pk

    def test_an_event_of_as_account_cannot_touch_bs_invoice(self, tenant_a, tenant_b, stripe_api):
        acct_a = connected(tenant_a, stripe_api, "acct_1Attacker000").account_id
        connected(tenant_b, stripe_api, "acct_1Victim00000")
        victim = issued(tenant_b)
        minor = int(victim.total * 100)
        # Tenant A's customer pays on A's account with B's invoice id in the metadata.
        for evt, type_, obj in (
            ("evt_x1", "payment_intent.succeeded", payment_intent("pi_x1", victim, minor)),
            ("evt_x2", "payment_intent.payment_failed", payment_intent("pi_x2", victim, minor, status="failed")),
            ("evt_x3", "checkout.session.completed", {
                "id": "cs_x3", "object": "checkout.session", "amount_total": minor, "currency": "eur",
                "metadata": {"mpanel_invoice_id": str(victim.pk)}, "mode": "payment", "payment_intent": "pi_x3",
                "payment_status": "paid", "status": "complete"}),
        ):  # fmt: skip
            response = post_connect_event(connect_event(evt, type_, obj, acct_a))
            assert response.status_code == 200 and response.json()["status"] == "unmatched", response.content
            stored = WebhookEvent.objects.get(event_id=evt)
            assert stored.tenant_id == tenant_a.tenant.pk and stored.account == acct_a and stored.error
        after = fresh(victim)
        assert after.status == "open" and after.amount_paid == 0
        assert not Payment.all_tenants.exists()

    def test_a_refund_event_of_another_account_does_not_touch_the_payment(self, tenant_a, tenant_b, stripe_api):
        acct_a = connected(tenant_a, stripe_api, "acct_1RefundA0000").account_id
        acct_b = connected(tenant_b, stripe_api, "acct_1RefundB0000").account_id
        inv_b = issued(tenant_b)
        minor = int(inv_b.total * 100)
        post_connect_event(connect_event("evt_pb", "payment_intent.succeeded", payment_intent("pi_b", inv_b, minor),
                                         acct_b))  # fmt: skip
        charge = {"id": "ch_b", "object": "charge", "amount": minor, "amount_refunded": minor, "currency": "eur",
                  "payment_intent": "pi_b", "refunded": True}  # fmt: skip
        assert post_connect_event(connect_event("evt_rf", "charge.refunded", charge, acct_a)).json()["status"] == (
            "unmatched"
        )
        assert Payment.all_tenants.get().refunded_amount == 0

    def test_unknown_and_disconnected_accounts_are_stored_and_touch_nothing(self, tenant_a, stripe_api):
        row = connected(tenant_a, stripe_api, "acct_1Gone0000000")
        invoice = issued(tenant_a)
        minor = int(invoice.total * 100)
        unknown = connect_event("evt_unknown", "payment_intent.succeeded", payment_intent("pi_u", invoice, minor),
                                "acct_1NobodyKnows0")  # fmt: skip
        response = post_connect_event(unknown)
        assert response.status_code == 200 and response.json()["status"] == "unmatched"
        with tenant_a.scope():
            connect.connect_disconnect(tenant=tenant_a.tenant)
        gone = connect_event("evt_gone", "payment_intent.succeeded", payment_intent("pi_g", invoice, minor),
                             row.account_id)  # fmt: skip
        assert post_connect_event(gone).json()["status"] == "unmatched"
        status = connect_event("evt_gone_upd", "account.updated", account_object(row.account_id), row.account_id)
        assert post_connect_event(status).json()["status"] == "unmatched"
        for stored in WebhookEvent.objects.all():
            assert stored.tenant_id is None and stored.raw_body and "nothing was applied" in stored.error
        assert fresh(invoice).status == "open" and not Payment.all_tenants.exists()

    def test_a_connect_event_with_a_bad_signature_stores_nothing(self, tenant_a, stripe_api):
        row = connected(tenant_a, stripe_api, "acct_1Forged00000")
        invoice = issued(tenant_a)
        event = connect_event("evt_f", "payment_intent.succeeded",
                              payment_intent("pi_f", invoice, int(invoice.total * 100)), row.account_id)  # fmt: skip
        assert post_connect_event(event, secret="whsec_forged").status_code == 400
        assert not WebhookEvent.objects.exists() and fresh(invoice).status == "open"
