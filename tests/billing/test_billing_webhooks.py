import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

import pytest
from django.db import connection
from django.urls import reverse

from apps.billing.models import Invoice, Payment, WebhookEvent
from apps.billing.services.webhooks import sign_generic
from apps.tenancy.roles import Role
from tests.billing_support import (
    GENERIC_SECRET,
    STRIPE_SECRET,
    STRIPE_WEBHOOK,
    generic_payment,
    issued,
    payment_intent,
    post_generic,
    post_stripe,
    stripe_delivery,
    stripe_event,
)
from tests.conftest import client_for


@pytest.fixture(autouse=True)
def _secrets(settings):
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = GENERIC_SECRET


def refreshed(invoice):
    return Invoice.all_tenants.get(pk=invoice.pk)


@pytest.mark.django_db
class TestStripe:
    def test_payment_intent_succeeded_pays_once(self, tenant_a):
        invoice = issued(tenant_a)
        minor = int(invoice.total * 100)
        event = stripe_event("evt_1", "payment_intent.succeeded", payment_intent("pi_1", invoice, minor))
        first = post_stripe(event)
        assert first.status_code == 200, first.content
        assert first.json()["status"] == "processed"
        assert refreshed(invoice).status == "paid"
        again = post_stripe(event)
        assert again.status_code == 200
        assert Payment.all_tenants.count() == 1 and WebhookEvent.objects.count() == 1
        stored = WebhookEvent.objects.get()
        assert stored.tenant_id == tenant_a.tenant.pk and stored.raw_body

    def test_checkout_completed_and_payment_intent_are_one_payment(self, tenant_a):
        invoice = issued(tenant_a)
        minor = int(invoice.total * 100)
        session = {
            "id": "cs_test_1", "object": "checkout.session", "amount_total": minor, "currency": "eur",
            "metadata": {"mpanel_invoice_id": str(invoice.pk)}, "mode": "payment", "payment_intent": "pi_2",
            "payment_status": "paid", "status": "complete",
        }  # fmt: skip
        assert post_stripe(stripe_event("evt_a", "checkout.session.completed", session)).status_code == 200
        assert post_stripe(stripe_event("evt_b", "payment_intent.succeeded", payment_intent("pi_2", invoice, minor)))
        assert Payment.all_tenants.count() == 1
        assert refreshed(invoice).amount_paid == invoice.total

    def test_bad_missing_stale_and_forged_signatures_store_nothing(self, tenant_a):
        invoice = issued(tenant_a)
        event = stripe_event("evt_x", "payment_intent.succeeded", payment_intent("pi_x", invoice, 100))
        body, header = stripe_delivery(event)
        client = client_for()
        assert client.post(STRIPE_WEBHOOK, body, content_type="application/json").status_code == 400
        assert client.post(STRIPE_WEBHOOK, body, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE="t=1,v1=deadbeef").status_code == 400  # fmt: skip
        assert post_stripe(event, secret="whsec_wrong").status_code == 400
        assert post_stripe(event, timestamp=int(time.time()) - 301).status_code == 400
        tampered = body.replace('"amount": 100', '"amount": 1')
        assert client.post(STRIPE_WEBHOOK, tampered, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=header).status_code == 400  # fmt: skip
        assert not WebhookEvent.objects.exists() and not Payment.all_tenants.exists()

    def test_unknown_types_are_stored_and_acknowledged(self):
        response = post_stripe(stripe_event("evt_u", "customer.created", {"id": "cus_1", "object": "customer"}))
        assert response.status_code == 200 and response.json()["status"] == "ignored"
        assert WebhookEvent.objects.get().status == "ignored"

    def test_unknown_invoice_is_unmatched_not_an_error(self):
        obj = {"id": "pi_9", "object": "payment_intent", "amount_received": 100, "currency": "eur",
               "metadata": {"mpanel_invoice_id": "00000000-0000-0000-0000-000000000000"}}  # fmt: skip
        assert post_stripe(stripe_event("evt_9", "payment_intent.succeeded", obj)).json()["status"] == "unmatched"

    def test_an_older_failure_never_overwrites_a_success(self, tenant_a):
        invoice = issued(tenant_a)
        minor = int(invoice.total * 100)
        now = int(time.time())
        post_stripe(stripe_event("evt_ok", "payment_intent.succeeded", payment_intent("pi_3", invoice, minor), now))
        failed = payment_intent("pi_3", invoice, minor, status="requires_payment_method")
        post_stripe(stripe_event("evt_old_fail", "payment_intent.payment_failed", failed, now - 60))
        payment = Payment.all_tenants.get()
        assert payment.status == "succeeded" and refreshed(invoice).status == "paid"

    def test_a_failure_then_a_success_pays(self, tenant_a):
        invoice = issued(tenant_a)
        minor = int(invoice.total * 100)
        now = int(time.time())
        failed = payment_intent("pi_4", invoice, minor, status="requires_payment_method")
        post_stripe(stripe_event("evt_f", "payment_intent.payment_failed", failed, now - 10))
        assert Payment.all_tenants.get().status == "failed"
        post_stripe(stripe_event("evt_s", "payment_intent.succeeded", payment_intent("pi_4", invoice, minor), now))
        assert Payment.all_tenants.get().status == "succeeded" and refreshed(invoice).status == "paid"

    def test_charge_refunded_is_cumulative_and_idempotent(self, tenant_a):
        invoice = issued(tenant_a)
        minor = int(invoice.total * 100)
        post_stripe(stripe_event("evt_p", "payment_intent.succeeded", payment_intent("pi_5", invoice, minor)))
        charge = {"id": "ch_5", "object": "charge", "amount": minor, "amount_refunded": 500, "currency": "eur",
                  "payment_intent": "pi_5", "refunded": False}  # fmt: skip
        post_stripe(stripe_event("evt_r1", "charge.refunded", charge))
        post_stripe(stripe_event("evt_r1_again", "charge.refunded", charge))
        payment = Payment.all_tenants.get()
        assert payment.refunded_amount == Decimal("5.00")
        post_stripe(stripe_event("evt_r2", "charge.refunded", {**charge, "amount_refunded": minor, "refunded": True}))
        payment.refresh_from_db()
        assert payment.status == "refunded" and payment.refunded_amount == invoice.total
        fresh = refreshed(invoice)
        assert fresh.status == "paid" and fresh.amount_due == 0

    def test_payment_for_a_void_invoice_is_kept_as_credit(self, tenant_a):
        from apps.billing.services import credit, invoices

        invoice = issued(tenant_a)
        with tenant_a.scope():
            invoices.invoice_void(invoice=invoice)
        post_stripe(stripe_event("evt_v", "payment_intent.succeeded", payment_intent("pi_v", invoice, 1234)))
        assert credit.credit_balance(customer=invoice.customer, currency="EUR") == Decimal("12.34")


@pytest.mark.django_db
class TestGeneric:
    def event(self, invoice, id_="g1", type_="payment.succeeded", amount=None, reference="bank-1"):
        return generic_payment(invoice, id_, type_=type_, amount=amount, reference=reference)

    def test_signed_payment_applies_once(self, tenant_a):
        invoice = issued(tenant_a)
        assert post_generic(self.event(invoice)).json()["status"] == "processed"
        assert post_generic(self.event(invoice)).status_code == 200
        assert Payment.all_tenants.count() == 1 and refreshed(invoice).status == "paid"

    def test_the_same_reference_in_two_tenants_is_two_payments(self, tenant_a, tenant_b):
        """A generic reference is each tenant's own text ("bank-1"): tenant B's payment with it is not
        a repeat of tenant A's (the lookup used to ignore the tenant and drop B's money)."""
        mine, theirs = issued(tenant_a), issued(tenant_b)
        assert post_generic(self.event(mine, id_="a-1")).json()["status"] == "processed"
        assert post_generic(self.event(theirs, id_="b-1")).json()["status"] == "processed"
        assert refreshed(mine).status == "paid" and refreshed(theirs).status == "paid"
        assert sorted(Payment.all_tenants.values_list("tenant_id", flat=True)) == sorted(
            [tenant_a.tenant.pk, tenant_b.tenant.pk]
        )

    def test_rotated_secret_with_two_signatures(self, tenant_a):
        invoice = issued(tenant_a)
        event = self.event(invoice)
        t, v1 = sign_generic(json.dumps(event).encode(), GENERIC_SECRET).split(",")
        response = post_generic(event, header=f"{t},v1={'0' * 64},{v1}")
        assert response.status_code == 200

    def test_refused_deliveries_store_nothing(self, tenant_a):
        invoice = issued(tenant_a)
        event = self.event(invoice)
        assert post_generic(event, "wrong").status_code == 400
        assert post_generic(event, timestamp=int(time.time()) - 301).status_code == 400
        assert post_generic(event, header="v1=abc").status_code == 400
        assert post_generic(event, header="t=abc,v1=abc").status_code == 400
        assert post_generic({"id": "x"}).status_code == 400  # signed, but not an event
        assert not WebhookEvent.objects.exists()

    def test_wrong_currency_or_amount_is_kept_as_failed(self, tenant_a):
        invoice = issued(tenant_a)
        bad = self.event(invoice, id_="g2")
        bad["data"]["currency"] = "USD"
        assert post_generic(bad).json()["status"] == "failed"
        assert WebhookEvent.objects.get(event_id="g2").error
        worse = self.event(invoice, id_="g3", amount="abc")
        assert post_generic(worse).json()["status"] == "failed"
        assert not Payment.all_tenants.exists()

    def test_refund_event(self, tenant_a):
        invoice = issued(tenant_a)
        post_generic(self.event(invoice))
        post_generic(self.event(invoice, id_="g-r", type_="refund.succeeded", amount="2.00"))
        post_generic(self.event(invoice, id_="g-r", type_="refund.succeeded", amount="2.00"))
        assert Payment.all_tenants.get().refunded_amount == Decimal("2.00")


@pytest.mark.django_db(transaction=True)
def test_the_same_webhook_ten_times_at_once_makes_one_payment(tenant_a, settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks")
    invoice = issued(tenant_a)
    event = stripe_event("evt_race", "payment_intent.succeeded",
                         payment_intent("pi_race", invoice, int(invoice.total * 100)))  # fmt: skip
    body, header = stripe_delivery(event)
    barrier = threading.Barrier(10)
    codes = []

    def deliver():
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            response = post_stripe(body, header=header)
            codes.append(response.status_code)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 10
    assert Payment.all_tenants.count() == 1 and WebhookEvent.objects.count() == 1
    assert refreshed(invoice).amount_paid == invoice.total


class _StripeReplay(BaseHTTPRequestHandler):
    """Answers like Stripe's API with the documented Checkout Session object."""

    requests: list = []
    sessions: dict = {}

    def do_GET(self):
        type(self).requests.append((self.path, {}, dict(self.headers)))
        session_id = self.path.rsplit("/", 1)[-1]
        body = type(self).sessions.get(session_id)
        status = 200 if body else 404
        body = body or {"error": {"type": "invalid_request_error", "message": "No such checkout session"}}
        self._send(status, body)

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_test")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode())
        type(self).requests.append((self.path, form, dict(self.headers)))
        if self.path == "/v1/checkout/sessions":
            body = {
                "id": "cs_test_a1b2c3", "object": "checkout.session", "mode": "payment", "status": "open",
                "payment_status": "unpaid", "currency": form["line_items[0][price_data][currency]"][0],
                "amount_total": int(form["line_items[0][price_data][unit_amount]"][0]),
                "metadata": {"mpanel_invoice_id": form["metadata[mpanel_invoice_id]"][0]},
                "url": "https://checkout.stripe.com/c/pay/cs_test_a1b2c3", "expires_at": 1767225600,
                "livemode": False,
            }  # fmt: skip
            status = 200
            type(self).sessions[body["id"]] = body
        else:
            body = {"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}}
            status = 404
        self._send(status, body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stripe_replay(settings):
    server = HTTPServer(("127.0.0.1", 0), _StripeReplay)
    _StripeReplay.requests = []
    _StripeReplay.sessions = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.STRIPE_API_KEY = "sk_test_mpanel"
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_port}"
    # These tenants have no connected account: the platform collects for them (tests/billing/test_connect.py
    # covers connected accounts and the refusal when the platform does not collect).
    settings.MPANEL_STRIPE_PLATFORM_CHARGES = True
    yield _StripeReplay
    server.shutdown()


@pytest.mark.django_db
def test_pay_with_stripe_answers_a_checkout_link(tenant_a, stripe_replay):
    invoice = issued(tenant_a)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}), {"method": "stripe"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["url"].startswith("https://checkout.stripe.com/")
    path, form, headers = stripe_replay.requests[0]
    assert path == "/v1/checkout/sessions"
    assert form["metadata[mpanel_invoice_id]"] == [str(invoice.pk)]
    assert form["payment_intent_data[metadata][mpanel_invoice_id]"] == [str(invoice.pk)]
    assert form["line_items[0][price_data][unit_amount]"] == [str(int(invoice.amount_due * 100))]
    assert headers["Authorization"] == "Bearer sk_test_mpanel"
    assert headers.get("Idempotency-Key")
    assert not Payment.all_tenants.exists()  # nothing is paid until Stripe says so


@pytest.mark.django_db
def test_pay_with_stripe_unconfigured_is_409(tenant_a, settings):
    settings.STRIPE_API_KEY = ""
    invoice = issued(tenant_a)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}), {"method": "stripe"}, format="json")
    assert response.status_code == 409


@pytest.mark.django_db
def test_a_paid_checkout_whose_webhook_never_came_is_reconciled_once(tenant_a, stripe_replay):
    from datetime import timedelta

    from django.utils import timezone

    from apps.billing.models import CheckoutSession
    from apps.billing.services.reconciliation import reconcile_open_sessions

    invoice = issued(tenant_a)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    link = admin.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}), {"method": "stripe"}, format="json").json()
    assert reconcile_open_sessions() == {"checked": 0, "paid": 0, "expired": 0}  # too fresh to ask about
    CheckoutSession.all_tenants.update(created_at=timezone.now() - timedelta(minutes=30))
    assert reconcile_open_sessions()["checked"] == 1 and not Payment.all_tenants.exists()  # still unpaid
    # The customer paid; Stripe's webhook was lost on the way.
    stripe_replay.sessions[link["id"]].update(payment_status="paid", status="complete", payment_intent="pi_lost")
    assert reconcile_open_sessions()["paid"] == 1
    assert refreshed(invoice).status == "paid"
    assert reconcile_open_sessions()["checked"] == 0  # settled: not asked again
    # The late webhook for the same payment records nothing twice.
    post_stripe(stripe_event("evt_late", "payment_intent.succeeded",
                             payment_intent("pi_lost", invoice, int(invoice.total * 100))))  # fmt: skip
    assert Payment.all_tenants.count() == 1
