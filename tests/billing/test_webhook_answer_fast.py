"""Issue 21: the webhook answer's fast paths answer exactly what the slow ones did.

- ``GenericEventSerializer.envelope`` reads a delivery's id and type without building the serializer when
  the fields accept it without a doubt; every other body goes through the serializer. The answers of the
  generic endpoints (platform, tenant header, tenant route) are compared with the serializer-only path for
  good, duplicate, bad-signature, unknown-tenant, bad-JSON, oversize and bad-envelope deliveries.
- ``webhooks.nudge`` asks for a drain once per process and ``MPANEL_WEBHOOK_NUDGE_SECONDS``; the drain
  waits that long after clearing its flag before its last look, so a row stored without asking is applied
  by it (exactly once), and rows whose drain was killed are the sweep's, once.
"""

from __future__ import annotations

import json
import time
import types
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from apps.billing.models import Invoice, Payment, WebhookEvent
from apps.billing.serializers import GenericEventSerializer
from apps.billing.services import webhook_secrets, webhooks
from apps.billing.services.webhooks import sign_generic
from tests.billing_support import GENERIC_SECRET, issued
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
GENERIC = "/api/v1/billing/webhooks/generic"


def _serializer_only(payload):
    serializer = GenericEventSerializer(data=payload if isinstance(payload, dict) else {})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data["id"], serializer.validated_data["type"]


def _outcome(read, payload):
    try:
        return ("ok", read(payload))
    except ValidationError as exc:
        return ("400", exc.detail)


ENVELOPES = [
    {"id": "evt-1", "type": "payment.succeeded", "data": {"a": 1}},
    {"id": "  evt-1 \n", "type": "\tpayment.succeeded ", "data": {}, "extra": [1, 2]},
    {"id": "e" * 255, "type": "t" * 100, "data": {}},
    {"id": "e" * 256, "type": "t", "data": {}},
    {"id": " " + "e" * 255 + " ", "type": "t", "data": {}},
    {"id": "e", "type": "t" * 101, "data": {}},
    {"id": "", "type": "t", "data": {}},
    {"id": "   ", "type": "t", "data": {}},
    {"id": "e", "type": "\u2003", "data": {}},
    {"id": "e\x00", "type": "t", "data": {}},
    {"id": "e", "type": "t\ud800", "data": {}},
    {"id": 5, "type": "t", "data": {}},
    {"id": True, "type": "t", "data": {}},
    {"id": None, "type": "t", "data": {}},
    {"id": ["e"], "type": "t", "data": {}},
    {"id": "e", "type": 1.5, "data": {}},
    {"type": "t", "data": {}},
    {"id": "e", "data": {}},
    {"id": "e", "type": "t"},
    {"id": "e", "type": "t", "data": None},
    {"id": "e", "type": "t", "data": []},
    {"id": "e", "type": "t", "data": "x"},
    {},
    [],
    ["id", "type"],
    "evt",
    7,
    None,
]


@pytest.mark.parametrize("payload", ENVELOPES, ids=range(len(ENVELOPES)))
def test_the_envelope_reads_every_body_as_the_serializer_does(payload):
    assert _outcome(GenericEventSerializer.envelope, payload) == _outcome(_serializer_only, payload)


@pytest.fixture
def deliveries(tenant_a, settings):
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = GENERIC_SECRET
    invoice = issued(tenant_a)
    _row, tenant_secret = webhook_secrets.secret_rotate(tenant=tenant_a.tenant)
    return invoice, tenant_a.tenant.slug, tenant_secret


def _headers(response) -> list:
    """The answer's headers, less what differs from one request to the next by design (the request's id)
    or by no meaning (the order of the CSP's directives)."""
    assert response.headers["X-Request-ID"]
    headers = {k: v for k, v in response.headers.items() if k != "X-Request-ID"}
    if "Content-Security-Policy" in headers:
        headers["Content-Security-Policy"] = sorted(headers["Content-Security-Policy"].split("; "))
    return sorted(headers.items())


def _answers(invoice, slug: str, tenant_secret: str, tag: str) -> list:
    """Every kind of delivery to every generic endpoint; ``tag`` keeps the event ids of two runs apart."""

    def payment(event_id: str) -> bytes:
        data = {"invoice_id": str(invoice.pk), "amount": "1.00", "currency": invoice.currency, "reference": event_id}
        return json.dumps({"id": event_id, "type": "payment.succeeded", "data": data}).encode()

    routes = [(GENERIC, {}, GENERIC_SECRET), (GENERIC, {"HTTP_X_MPANEL_TENANT": slug}, tenant_secret),
              (f"{GENERIC}/{slug}", {}, tenant_secret)]  # fmt: skip
    bodies = [
        ("good", payment(f"{tag}-good")),
        ("padded", json.dumps({"id": f" {tag}-pad ", "type": " refund.unknown ", "data": {}}).encode()),
        ("no data", json.dumps({"id": f"{tag}-nd", "type": "payment.succeeded"}).encode()),
        ("long id", json.dumps({"id": "x" * 256, "type": "t", "data": {}}).encode()),
        ("id a number", json.dumps({"id": 12, "type": "t", "data": {}}).encode()),
        ("not an object", b"[1, 2]"),
        ("bad json", b'{"id": '),
        ("nesting bomb", b"[" * 5000 + b"]" * 5000),
        ("oversize", b'{"id": "big", "type": "t", "data": {"x": "' + b"y" * 2_700_000 + b'"}}'),
    ]
    answers = []
    for path, extra, secret in routes:
        for name, raw in bodies:
            for signed_with in (secret, "wrong-secret"):
                sig = sign_generic(raw, signed_with)
                for _ in range(2):  # the second is a repeat of the first
                    r = client_for().post(path, raw, content_type="application/json",
                                          HTTP_X_MPANEL_SIGNATURE=sig, **extra)  # fmt: skip
                    answers.append((path, bool(extra), name, signed_with == secret, r.status_code,
                                    r.content.replace(tag.encode(), b"TAG"), _headers(r)))  # fmt: skip
    for path, extra in ((f"{GENERIC}/no-such-tenant", {}), (GENERIC, {"HTTP_X_MPANEL_TENANT": "no-such-tenant"})):
        raw = payment(f"{tag}-u")
        r = client_for().post(path, raw, content_type="application/json",
                              HTTP_X_MPANEL_SIGNATURE=sign_generic(raw, tenant_secret), **extra)  # fmt: skip
        answers.append(("unknown tenant", path, r.status_code, r.content, _headers(r)))
    return answers


def test_every_generic_endpoint_answers_as_with_the_serializer_alone(deliveries, monkeypatch):
    fast = _answers(*deliveries, tag="fast")
    monkeypatch.setattr(GenericEventSerializer, "envelope", classmethod(lambda cls, payload: _serializer_only(payload)))
    slow = _answers(*deliveries, tag="slow")
    assert fast == slow
    statuses = {a[4] for a in fast if len(a) == 7}
    assert statuses == {200, 400, 413}  # every kind of answer was compared
    # The good delivery of each run was applied once: at the tenant's endpoint (by header, then by its route: a
    # repeat there); the platform endpoint does not reach a tenant that has its own.
    assert Payment.all_tenants.filter(invoice=deliveries[0]).count() == 2


# --- the drain's ask: once per process and window ----------------------------------------------


class Spy:
    """The cache and the broker as ``nudge`` and ``drain`` see them, counting their calls."""

    def __init__(self, monkeypatch):
        self.cache_calls: list = []
        self.messages = 0
        spy = self

        class Cache:
            def add(self, key, value, timeout=None):
                spy.cache_calls.append(("add", key))
                return cache.add(key, value, timeout=timeout)

            def delete(self, key):
                spy.cache_calls.append(("delete", key))
                return cache.delete(key)

            def set(self, key, value, timeout=None):
                spy.cache_calls.append(("set", key))
                return cache.set(key, value, timeout=timeout)

        class Message:
            def delay(self):
                spy.messages += 1

        monkeypatch.setattr(webhooks, "cache", Cache())
        monkeypatch.setattr(webhooks, "signature", lambda name: Message())


@pytest.fixture
def windowed(settings, monkeypatch):
    settings.MPANEL_JOBS_EAGER = False
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = GENERIC_SECRET
    settings.MPANEL_WEBHOOK_NUDGE_SECONDS = 0.2
    cache.delete(webhooks.DRAIN_FLAG)
    webhooks.forget_nudge()
    yield Spy(monkeypatch)
    webhooks.forget_nudge()


def _post(invoice, event_id: str):
    data = {"invoice_id": str(invoice.pk), "amount": "1.00", "currency": invoice.currency, "reference": event_id}
    raw = json.dumps({"id": event_id, "type": "payment.succeeded", "data": data}).encode()
    response = client_for().post(GENERIC, raw, content_type="application/json",
                                 HTTP_X_MPANEL_SIGNATURE=sign_generic(raw, GENERIC_SECRET))  # fmt: skip
    assert response.status_code == 200 and response.json()["status"] == "received"


def _own_clock(monkeypatch, clock: list[float]) -> types.SimpleNamespace:
    """``webhooks``' own ``time`` replaced by one on ``clock`` (``sleep`` settable), not the ``time`` module:
    other threads of the process use that one (a job heartbeat thread left by an earlier test of the same
    xdist worker spun on a patched ``time.sleep`` and posted this test's delivery from its thread)."""
    own = types.SimpleNamespace(time=time.time, monotonic=lambda: clock[0], sleep=time.sleep)
    monkeypatch.setattr(webhooks, "time", own)
    return own


def test_a_burst_asks_once_per_window(windowed, tenant_a, django_capture_on_commit_callbacks, monkeypatch):
    invoice = issued(tenant_a)
    clock = [1000.0]
    clock_of_webhooks = _own_clock(monkeypatch, clock)
    for i in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            _post(invoice, f"evt-{i}")
        clock[0] += 0.01
    assert windowed.cache_calls == [("add", webhooks.DRAIN_FLAG)] and windowed.messages == 1
    clock[0] += 0.2  # the window is over: the next delivery asks again (the flag is set: no message)
    with django_capture_on_commit_callbacks(execute=True):
        _post(invoice, "evt-5")
    assert windowed.cache_calls == [("add", webhooks.DRAIN_FLAG)] * 2 and windowed.messages == 1
    # One drain applies all six, once each.
    clock_of_webhooks.sleep = lambda seconds: clock.__setitem__(0, clock[0] + seconds)
    assert webhooks.drain() == 6
    assert Invoice.all_tenants.get(pk=invoice.pk).amount_paid == 6
    assert set(WebhookEvent.objects.values_list("status", "attempts")) == {("processed", 1)}


def test_a_failed_ask_is_asked_again_by_the_next_delivery(windowed, monkeypatch):
    def down(key, value, timeout=None):
        raise ConnectionError("the cache went away")

    monkeypatch.setattr(webhooks.cache, "add", down)
    with pytest.raises(ConnectionError):
        webhooks.nudge()
    monkeypatch.undo()
    spy = Spy(monkeypatch)
    webhooks.nudge()
    assert spy.cache_calls == [("add", webhooks.DRAIN_FLAG)] and spy.messages == 1


def test_the_drain_waits_a_window_after_clearing_and_applies_a_row_stored_without_asking(
    windowed, tenant_a, django_capture_on_commit_callbacks, monkeypatch
):
    """A process asked (the flag was set) and goes on storing rows without asking for a window: the drain
    clears the flag, waits the window, and its last look applies what came meanwhile, once."""
    invoice = issued(tenant_a)
    clock = [1000.0]  # the drain's wait is counted on this clock: all of it within the asking window
    clock_of_webhooks = _own_clock(monkeypatch, clock)
    with django_capture_on_commit_callbacks(execute=True):
        _post(invoice, "evt-asked")  # asks: flag set, one message
    waits = []

    def sleep(seconds):
        if not waits:
            # A delivery of the asking process within its window, during the drain's wait: it does not ask.
            with django_capture_on_commit_callbacks(execute=True):
                _post(invoice, "evt-quiet")
        waits.append(seconds)
        clock[0] += seconds

    clock_of_webhooks.sleep = sleep
    assert webhooks.drain() == 2
    assert sum(waits) >= 0.2 and max(waits) <= webhooks.DRAIN_POLL  # it waited the window out, looking meanwhile
    assert windowed.cache_calls == [("add", webhooks.DRAIN_FLAG), ("delete", webhooks.DRAIN_FLAG)]
    assert windowed.messages == 1
    assert cache.get(webhooks.DRAIN_FLAG) is None
    assert Invoice.all_tenants.get(pk=invoice.pk).amount_paid == 2
    assert set(WebhookEvent.objects.values_list("status", "attempts")) == {("processed", 1)}
    assert webhooks.drain() == 0


def test_a_drain_that_reaches_its_limit_hands_over_what_came_without_asking(
    windowed, tenant_a, django_capture_on_commit_callbacks, monkeypatch
):
    """A burst's last deliveries, within their process's window, ask for nothing: they count on the drain
    that holds the flag. One that stops at its limit sets the flag again and sends the next drain, which
    applies them once; nothing waits for the sweep (make bench found 116 events left so, with no sweep)."""
    invoice = issued(tenant_a)
    clock = [1000.0]
    clock_of_webhooks = _own_clock(monkeypatch, clock)
    clock_of_webhooks.sleep = lambda seconds: clock.__setitem__(0, clock[0] + seconds)
    for i in range(5):  # the first asks (flag set, one message); the others, within the window, do not
        with django_capture_on_commit_callbacks(execute=True):
            _post(invoice, f"evt-{i}")
    assert windowed.messages == 1
    monkeypatch.setattr(webhooks, "DRAIN_BATCH", 2)
    assert webhooks.drain(limit=2) == 2
    assert windowed.messages == 2 and cache.get(webhooks.DRAIN_FLAG) == 1  # handed over, the flag still set
    assert WebhookEvent.objects.filter(status="received").count() == 3
    assert webhooks.drain() == 3  # the drain it sent
    assert cache.get(webhooks.DRAIN_FLAG) is None and windowed.messages == 2
    assert set(WebhookEvent.objects.values_list("status", "attempts")) == {("processed", 1)}
    assert Invoice.all_tenants.get(pk=invoice.pk).amount_paid == 5


def test_rows_of_a_killed_drain_are_the_sweeps_once(windowed, tenant_a, django_capture_on_commit_callbacks):
    """A drain killed mid-way leaves its flag until it expires: deliveries meanwhile ask for nothing, and
    what it left unapplied is applied by the sweep, once (a later drain finds nothing to do twice)."""
    invoice = issued(tenant_a)
    cache.set(webhooks.DRAIN_FLAG, 1, timeout=webhooks.DRAIN_FLAG_TTL)  # the killed drain's
    for i in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            _post(invoice, f"evt-{i}")
        webhooks.forget_nudge()  # each from another process: each asks, and finds the flag set
    assert windowed.messages == 0
    assert WebhookEvent.objects.filter(status="received").count() == 3
    WebhookEvent.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    assert webhooks.sweep() == 3
    assert webhooks.sweep() == 0
    assert webhooks.drain() == 0
    assert Invoice.all_tenants.get(pk=invoice.pk).amount_paid == 3
    assert set(WebhookEvent.objects.values_list("status", "attempts")) == {("processed", 1)}


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_and_drains_apply_every_event_once_without_the_sweep(tenant_a, settings, monkeypatch):
    """Four processes' worth of senders (threads, each its own connection; the window per process is
    modelled by one shared clock-free window of 50 ms), each ask running a real drain in its own thread (the
    worker): when all is done, every event is applied once, none left for the sweep."""
    import random
    import threading

    from django.db import connection

    settings.MPANEL_JOBS_EAGER = False
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = GENERIC_SECRET
    settings.MPANEL_WEBHOOK_NUDGE_SECONDS = 0.05
    cache.delete(webhooks.DRAIN_FLAG)
    webhooks.forget_nudge()
    invoice = issued(tenant_a)
    drains: list[threading.Thread] = []
    errors: list[BaseException] = []

    def run(target):
        try:
            target()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    class Message:
        def delay(self):
            thread = threading.Thread(target=run, args=(webhooks.drain,))
            drains.append(thread)
            thread.start()

    monkeypatch.setattr(webhooks, "signature", lambda name: Message())

    def sender(n: int):
        for i in range(25):
            data = {"invoice_id": str(invoice.pk), "amount": "0.01", "currency": invoice.currency,
                    "reference": f"s{n}-{i}"}  # fmt: skip
            raw = json.dumps({"id": f"evt-{n}-{i}", "type": "payment.succeeded", "data": data}).encode()
            response = client_for().post(GENERIC, raw, content_type="application/json",
                                         HTTP_X_MPANEL_SIGNATURE=sign_generic(raw, GENERIC_SECRET))  # fmt: skip
            assert response.status_code == 200
            time.sleep(random.uniform(0, 0.01))

    senders = [threading.Thread(target=run, args=(lambda n=n: sender(n),)) for n in range(4)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(60)
    while any(thread.is_alive() for thread in drains):
        for thread in list(drains):
            thread.join(60)
    assert errors == []
    assert drains  # asked for at least once
    assert WebhookEvent.objects.filter(status="received").count() == 0  # nothing left for the sweep
    assert set(WebhookEvent.objects.values_list("status", "attempts")) == {("processed", 1)}
    assert WebhookEvent.objects.count() == Payment.all_tenants.filter(invoice=invoice).count() == 100
    assert Invoice.all_tenants.get(pk=invoice.pk).amount_paid == 1
