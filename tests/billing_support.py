"""Helpers for the billing tests: customers, invoices in a given state, signed webhook deliveries, and a
local replay of Stripe's API (``stripe_api``: the official library talks to it over HTTP; it answers
with the objects Stripe documents and records what it was sent, the ``Stripe-Account`` header and the
idempotency key above all)."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

import pytest
from stripe import WebhookSignature

from apps.billing.models import Invoice, StripeConnection
from apps.billing.services import connect, invoices
from apps.billing.services.webhooks import sign_generic
from apps.customers.models import Customer
from tests.conftest import client_for

STRIPE_SECRET = "whsec_test_secret_for_mpanel"
GENERIC_SECRET = "generic-test-secret"


def customer_of(fx, email="buyer@example.com", currency="EUR") -> Customer:
    with fx.scope():
        existing = Customer.objects.filter(email=email).first()
        return existing or Customer.objects.create(name="Buyer", email=email, currency=currency)


def draft(fx, customer=None, lines=None, currency="EUR"):
    customer = customer or customer_of(fx, currency=currency)
    lines = lines or [
        {"description": "Hosting", "quantity": "1", "unit_price": "10.00", "tax_rate": "21"},
        {"description": "Domain", "quantity": "1", "unit_price": "9.99", "tax_rate": "21"},
    ]
    with fx.scope():
        return invoices.invoice_create(tenant=fx.tenant, customer=customer, lines=lines, currency=currency)


def issued(fx, **kwargs):
    invoice = draft(fx, **kwargs)
    with fx.scope():
        return invoices.invoice_issue(invoice=invoice)


def stripe_delivery(event: dict, *, secret: str = STRIPE_SECRET, timestamp: int | None = None):
    """A delivery signed by stripe-python's own signing code, as Stripe signs it."""
    body = json.dumps(event)
    header = WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body, header


GENERIC_WEBHOOK = "/api/v1/billing/webhooks/generic"
STRIPE_WEBHOOK = "/api/v1/billing/webhooks/stripe"


def post_stripe(event: dict | str, *, secret: str = STRIPE_SECRET, timestamp: int | None = None, header=None):
    """POST a Stripe delivery signed with ``secret`` (or sent with the given ``header``); a str ``event`` is sent
    as it is (a body that is not an event)."""
    if isinstance(event, str):
        body, signed = event, WebhookSignature.generate_signature_header(event, secret, timestamp=timestamp)
    else:
        body, signed = stripe_delivery(event, secret=secret, timestamp=timestamp)
    return client_for().post(
        STRIPE_WEBHOOK, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header or signed
    )


def post_generic(body, *secrets: str, url: str = GENERIC_WEBHOOK, timestamp=None, header=None, tenant=None):
    """POST a generic delivery (a dict/list as JSON, bytes as they are) signed with each of ``secrets`` (the
    platform's by default; a sender switching secrets signs with both), or sent with the given ``header``;
    ``tenant`` names the tenant in ``X-Mpanel-Tenant``."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if header is None:
        secrets = secrets or (GENERIC_SECRET,)
        header = sign_generic(raw, secrets[0], timestamp)
        for other in secrets[1:]:
            header += "," + sign_generic(raw, other, timestamp).split(",")[1]
    extra = {"HTTP_X_MPANEL_TENANT": tenant} if tenant is not None else {}
    return client_for().post(url, raw, content_type="application/json", HTTP_X_MPANEL_SIGNATURE=header, **extra)


def generic_payment(invoice, event_id: str, *, type_="payment.succeeded", amount=None, reference=None) -> dict:
    """A generic payment event for ``invoice``: its whole total unless ``amount``, the event id as the
    reference unless ``reference``."""
    data = {"invoice_id": str(invoice.pk), "amount": amount or str(invoice.total), "currency": invoice.currency,
            "reference": reference or event_id}  # fmt: skip
    return {"id": event_id, "type": type_, "data": data}


def stripe_event(event_id: str, type_: str, obj: dict, created: int | None = None) -> dict:
    """The envelope of Stripe's documented Event object (API version 2024-06-20 shape)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created or int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }


def payment_intent(pi_id: str, invoice, amount_minor: int, status="succeeded", currency=None) -> dict:
    """Stripe's documented PaymentIntent object, trimmed to the fields that matter here."""
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount_minor,
        "amount_received": amount_minor if status == "succeeded" else 0,
        "currency": (currency or invoice.currency).lower(),
        "metadata": {"mpanel_invoice_id": str(invoice.pk)},
        "status": status,
        "last_payment_error": None if status == "succeeded" else {"message": "Your card was declined."},
        "latest_charge": f"ch_{pi_id[3:]}",
        "livemode": False,
    }


def money(value) -> Decimal:
    return Decimal(str(value))


# --- Stripe's API, replayed locally (Connect, Checkout, saved cards) --------------------------------

CONNECT_SECRET = "whsec_connect_endpoint_secret"


def account_object(account_id: str, *, type_="express", charges=False, payouts=False, submitted=False, email=""):
    """Stripe's documented Account object (API version 2024-06-20), trimmed to what matters here."""
    due = [] if charges else ["business_profile.mcc", "external_account", "tos_acceptance.date"]
    return {
        "id": account_id, "object": "account", "type": type_, "business_type": None, "country": "NL",
        "default_currency": "eur", "email": email or None, "created": 1695830751, "metadata": {},
        "charges_enabled": charges, "payouts_enabled": payouts, "details_submitted": submitted,
        "capabilities": {"card_payments": "active" if charges else "inactive",
                         "transfers": "active" if charges else "inactive"},
        "controller": {"is_controller": True, "type": "application"},
        "requirements": {"alternatives": [], "current_deadline": None, "currently_due": due, "disabled_reason":
                         None if charges else "requirements.past_due", "errors": [], "eventually_due": due,
                         "past_due": due, "pending_verification": []},
    }  # fmt: skip


class _Stripe(BaseHTTPRequestHandler):
    """Answers like Stripe's API, per connected account (the ``Stripe-Account`` header)."""

    requests: list = []
    sent: list = []  # every request with its headers: {"method", "path", "form", "account", "idempotency_key"}
    accounts: dict = {}
    sessions: dict = {}  # (account, id) -> session
    customers: dict = {}  # (account, id) -> customer
    payment_methods: dict = {}  # (account, id) -> payment method
    intents: dict = {}  # (account, id) -> payment intent
    declines: dict = {}  # payment method id -> the card error code its off-session charges answer
    replies: dict = {}  # idempotency key -> (status, body): Stripe answers a retried request alike
    counter = 0

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_test")
        self.end_headers()
        self.wfile.write(data)

    def _missing(self, what):
        self._send(404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                   "message": f"No such {what}"}})  # fmt: skip

    def do_GET(self):
        cls = type(self)
        account = self.headers.get("Stripe-Account", "")
        cls.requests.append(("GET", self.path, {}, account))
        cls.sent.append({"method": "GET", "path": self.path, "form": {}, "account": account, "idempotency_key": ""})
        kind, _, ident = self.path.rpartition("/")
        if kind == "/v1/accounts" and ident in cls.accounts:
            return self._send(200, cls.accounts[ident])
        if kind == "/v1/checkout/sessions" and (account, ident) in cls.sessions:
            return self._send(200, cls.sessions[(account, ident)])
        if kind == "/v1/payment_methods" and (account, ident) in cls.payment_methods:
            return self._send(200, cls.payment_methods[(account, ident)])
        self._missing("object")

    def do_POST(self):
        cls = type(self)
        length = int(self.headers.get("Content-Length", 0))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        account = self.headers.get("Stripe-Account", "")
        key = self.headers.get("Idempotency-Key", "")
        cls.requests.append(("POST", self.path, form, account))
        cls.sent.append({"method": "POST", "path": self.path, "form": form, "account": account, "idempotency_key": key})
        if key and key in cls.replies:
            return self._send(*cls.replies[key])
        cls.counter += 1
        n = cls.counter
        if self.path.startswith(("/v1/customers", "/v1/payment_methods", "/v1/payment_intents")) or (
            self.path == "/v1/checkout/sessions" and form.get("mode") == "setup"
        ):
            status, body = self._cards(form, account, n)
            if key:
                cls.replies[key] = (status, body)
            return self._send(status, body)
        if self.path == "/v1/accounts":
            body = account_object(f"acct_1New{n:012d}", type_=form["type"], email=form.get("email", ""))
            cls.accounts[body["id"]] = body
            return self._send(200, body)
        if self.path == "/v1/account_links":
            if form["account"] not in cls.accounts:
                return self._missing("account")
            return self._send(200, {"object": "account_link", "created": 1680577733, "expires_at": 1680578033,
                                    "url": f"https://connect.stripe.com/setup/e/{form['account']}/Tq{n}"})  # fmt: skip
        if self.path == "/v1/checkout/sessions":
            body = {
                "id": f"cs_test_{n}", "object": "checkout.session", "mode": "payment", "status": "open",
                "payment_status": "unpaid", "currency": form["line_items[0][price_data][currency]"],
                "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
                "metadata": {"mpanel_invoice_id": form["metadata[mpanel_invoice_id]"]},
                "url": f"https://checkout.stripe.com/c/pay/cs_test_{n}", "expires_at": 1767225600,
                "payment_intent": None, "livemode": False,
            }  # fmt: skip
            cls.sessions[(account, body["id"])] = body
            return self._send(200, body)
        if self.path == "/v1/refunds":
            return self._send(200, {"id": f"re_{n}", "object": "refund", "amount": int(form["amount"]),
                                    "currency": "eur", "payment_intent": form["payment_intent"],
                                    "status": "succeeded"})  # fmt: skip
        self._missing("route")

    def _cards(self, form, account, n):
        """Customers, Checkout in setup mode, payment methods and off-session PaymentIntents (Stripe's
        documented objects, https://docs.stripe.com/api)."""
        cls = type(self)
        if self.path == "/v1/customers":
            body = customer_object(f"cus_Test{n:010d}", form.get("email", ""), form.get("name", ""))
            body["metadata"] = {"mpanel_customer_id": form.get("metadata[mpanel_customer_id]", "")}
            cls.customers[(account, body["id"])] = body
            return 200, body
        if self.path == "/v1/checkout/sessions":
            if (account, form.get("customer")) not in cls.customers:
                return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                       "message": f"No such customer: '{form.get('customer')}'"}}  # fmt: skip
            metadata = {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")}
            intent = setup_intent_object(f"seti_Test{n:010d}", form["customer"], None, metadata,
                                         status="requires_payment_method")  # fmt: skip
            body = {
                "id": f"cs_test_setup_{n}", "object": "checkout.session", "mode": "setup", "status": "open",
                "payment_status": "no_payment_required", "customer": form["customer"], "currency": None,
                "amount_total": None, "metadata": metadata, "setup_intent": intent["id"],
                "success_url": form["success_url"], "cancel_url": form["cancel_url"],
                "url": f"https://checkout.stripe.com/c/pay/cs_test_setup_{n}", "expires_at": 1767225600,
                "payment_intent": None, "livemode": False, "_setup_intent": intent,
            }  # fmt: skip
            cls.sessions[(account, body["id"])] = body
            return 200, body
        parts = self.path.split("/")
        if self.path.startswith("/v1/payment_methods/") and parts[-1] == "detach":
            pm = cls.payment_methods.get((account, parts[3]))
            if pm is None:
                return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                       "message": f"No such PaymentMethod: '{parts[3]}'"}}  # fmt: skip
            pm["customer"] = None
            return 200, pm
        if self.path == "/v1/payment_intents":
            pm_id = form["payment_method"]
            pm = cls.payment_methods.get((account, pm_id))
            amount = int(form["amount"])
            metadata = {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")}
            if pm is None or pm.get("customer") != form.get("customer"):
                missing = f"No such PaymentMethod: '{pm_id}'"
                return 400, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                       "message": missing, "param": "payment_method"}}  # fmt: skip
            code = cls.declines.get(pm_id)
            intent = payment_intent_object(f"pi_Test{n:010d}", amount, form["currency"], form["customer"], pm_id,
                                           metadata, "requires_payment_method" if code else "succeeded")  # fmt: skip
            cls.intents[(account, intent["id"])] = intent
            if code:
                return 402, card_error(code, intent, pm)
            return 200, intent
        return 404, {"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}}

    def log_message(self, *args):
        pass


@pytest.fixture
def stripe_api(settings):
    server = HTTPServer(("127.0.0.1", 0), _Stripe)
    _Stripe.requests, _Stripe.sent, _Stripe.accounts, _Stripe.sessions = [], [], {}, {}
    _Stripe.customers, _Stripe.payment_methods, _Stripe.intents, _Stripe.declines, _Stripe.replies = {}, {}, {}, {}, {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.STRIPE_API_KEY = "sk_test_platform"
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_port}"
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    settings.STRIPE_CONNECT_WEBHOOK_SECRET = CONNECT_SECRET
    settings.MPANEL_STRIPE_PLATFORM_CHARGES = False
    yield _Stripe
    server.shutdown()


def connected(fx, stripe_api, account_id: str, *, charges=True, fee="0") -> StripeConnection:
    """Tenant ``fx`` connected to an existing account that has finished onboarding."""
    stripe_api.accounts[account_id] = account_object(account_id, charges=charges, payouts=charges, submitted=charges)
    with fx.scope():
        connection, _link = connect.connect_start(tenant=fx.tenant, account_id=account_id)
    if fee != "0":
        connect.connect_set_fee(connection=connection, percent=fee)
    return StripeConnection.objects.get(pk=connection.pk)


def post_connect_event(event, secret=CONNECT_SECRET):
    return post_stripe(event, secret=secret)


def connect_event(event_id, type_, obj, account, created=None):
    """Stripe's Event envelope as a Connect endpoint receives it: the connected account on top."""
    return {**stripe_event(event_id, type_, obj, created), "account": account}


def fresh(invoice) -> Invoice:
    return Invoice.all_tenants.get(pk=invoice.pk)


# --- Stripe's documented objects for saved cards (https://docs.stripe.com/api, API version 2024-06-20) --


def customer_object(cus_id: str, email: str = "", name: str = "") -> dict:
    return {"id": cus_id, "object": "customer", "address": None, "balance": 0, "created": 1680893993,
            "currency": None, "default_source": None, "delinquent": False, "description": None, "email": email or None,
            "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                                 "rendering_options": None},
            "livemode": False, "metadata": {}, "name": name or None, "phone": None, "preferred_locales": [],
            "shipping": None, "tax_exempt": "none", "test_clock": None}  # fmt: skip


def payment_method_object(pm_id: str, customer: str | None, *, brand="visa", last4="4242", exp_month=8,
                          exp_year=2030) -> dict:  # fmt: skip
    return {"id": pm_id, "object": "payment_method", "allow_redisplay": "unspecified",
            "billing_details": {"address": {"city": None, "country": None, "line1": None, "line2": None,
                                            "postal_code": None, "state": None},
                                "email": None, "name": "Jenny Rosen", "phone": None},
            "card": {"brand": brand, "checks": {"address_line1_check": None, "address_postal_code_check": None,
                                                "cvc_check": "pass"},
                     "country": "US", "display_brand": brand, "exp_month": exp_month, "exp_year": exp_year,
                     "fingerprint": "Xt5EWLLDS7FJjR1c", "funding": "credit", "generated_from": None, "last4": last4,
                     "networks": {"available": [brand], "preferred": None},
                     "three_d_secure_usage": {"supported": True}, "wallet": None},
            "created": 1726673582, "customer": customer, "livemode": False, "metadata": {}, "type": "card"}  # fmt: skip


def setup_intent_object(seti_id: str, customer: str, payment_method: str | None, metadata: dict,
                        status: str = "succeeded") -> dict:  # fmt: skip
    return {"id": seti_id, "object": "setup_intent", "application": None, "automatic_payment_methods": None,
            "cancellation_reason": None, "client_secret": f"{seti_id}_secret_test", "created": 1678942624,
            "customer": customer, "description": None, "flow_directions": None, "last_setup_error": None,
            "latest_attempt": None, "livemode": False, "mandate": None, "metadata": metadata, "next_action": None,
            "on_behalf_of": None, "payment_method": payment_method,
            "payment_method_options": {"card": {"mandate_options": None, "network": None,
                                                "request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"], "single_use_mandate": None, "status": status,
            "usage": "off_session"}  # fmt: skip


def payment_intent_object(pi_id: str, amount: int, currency: str, customer: str, payment_method: str, metadata: dict,
                          status: str) -> dict:  # fmt: skip
    ok = status == "succeeded"
    return {"id": pi_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_received": amount if ok else 0, "application": None, "application_fee_amount": None,
            "capture_method": "automatic", "client_secret": f"{pi_id}_secret_test", "confirmation_method": "automatic",
            "created": 1680800504, "currency": currency, "customer": customer, "description": None,
            "last_payment_error": None, "latest_charge": f"ch_{pi_id[3:]}" if ok else None, "livemode": False,
            "metadata": metadata, "next_action": None, "payment_method": payment_method if ok else None,
            "payment_method_types": ["card"], "setup_future_usage": None, "status": status}  # fmt: skip


def card_error(code: str, intent: dict, pm: dict) -> dict:
    """Stripe's answer (HTTP 402) to an off-session charge the card refuses: ``authentication_required``
    (the bank wants its holder: 3-D Secure) or ``card_declined`` (https://docs.stripe.com/error-codes)."""
    messages = {
        "authentication_required": "Your card was declined. This transaction requires authentication.",
        "card_declined": "Your card was declined.",
    }
    error = {"type": "card_error", "code": code, "decline_code": "authentication_required"
             if code == "authentication_required" else "generic_decline",
             "doc_url": f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}",
             "message": messages.get(code, "Your card was declined."), "payment_method": pm,
             "request_log_url": "https://dashboard.stripe.com/test/logs/req_test"}  # fmt: skip
    intent["last_payment_error"] = {k: v for k, v in error.items() if k != "request_log_url"}
    error["payment_intent"] = intent
    if code != "authentication_required":
        error["charge"] = f"ch_{intent['id'][3:]}"
    return {"error": error}
