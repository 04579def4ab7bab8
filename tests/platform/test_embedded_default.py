"""The embedded default (SQLite, no Redis) under its own server: real gunicorn processes.

- Throttles count in one cache shared by every process (the database cache), at the documented
  rates (`MPANEL_LOGIN_RATE`, `MPANEL_PASSWORD_RATE`: 10/min), per client address for logins and
  password resets and per email for resets, exactly, even when the requests arrive at once.
- Concurrent writes wait their turn (WAL, busy timeout, IMMEDIATE transactions) instead of
  answering "503 database is unavailable".
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_DOWN, Decimal

import pytest
import requests

from apps.billing.services.webhooks import sign_generic
from tests.embedded_support import DEMO_OWNER, DEMO_PASSWORD, EmbeddedPanel

WEBHOOK_SECRET = "embedded-webhook-secret"


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    # One proxy hop trusted, so each test speaks from addresses of its own (X-Forwarded-For).
    server = EmbeddedPanel(
        tmp_path_factory.mktemp("embedded") / "var",
        MPANEL_TRUSTED_PROXY_COUNT="1",
        MPANEL_GENERIC_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    try:
        yield server.start(servers=2, workers=2)
    finally:
        server.stop()


def _burst(calls, threads: int = 12):
    """Runs every call at once (as far as ``threads`` allow); their responses in order."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda call: call(), calls))


def _login(panel, n: int, address: str, email: str = DEMO_OWNER, password: str = DEMO_PASSWORD):
    return requests.post(
        panel.url(n, "/api/v1/auth/login/"),
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": address},
        timeout=120,
    )


def _statuses(responses) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in responses:
        out[r.status_code] = out.get(r.status_code, 0) + 1
    return out


def test_logins_are_held_to_the_rate_per_address_across_every_process(panel):
    responses = _burst([lambda n=n: _login(panel, n, "198.51.100.1") for n in range(24)])
    assert _statuses(responses) == {200: 10, 429: 14}, panel.log_tail()
    assert all(r.json().get("key") for r in responses if r.status_code == 200)
    # Another address has a budget of its own, in whichever process it lands.
    assert _login(panel, 1, "198.51.100.2").status_code == 200
    # The throttle reads the trusted address, not whatever a client puts in front of it.
    spoofed = requests.post(
        panel.url(0, "/api/v1/auth/login/"),
        json={"email": DEMO_OWNER, "password": DEMO_PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.1"},
        timeout=60,
    )
    assert spoofed.status_code == 429


def test_password_resets_are_held_to_the_rate_per_address_and_per_email(panel):
    def reset(n: int, address: str, email: str):
        return lambda: requests.post(
            panel.url(n, "/api/v1/auth/password/reset/"),
            json={"email": email},
            headers={"X-Forwarded-For": address},
            timeout=120,
        )

    # One address, fourteen different inboxes.
    per_address = _burst([reset(n, "198.51.100.20", f"someone{n}@example.com") for n in range(14)])
    assert _statuses(per_address) == {200: 10, 429: 4}, panel.log_tail()
    # One inbox, fourteen different addresses: no mail bombing from a botnet either.
    per_email = _burst([reset(n, f"198.51.100.{100 + n}", "ada@example.com") for n in range(14)])
    assert _statuses(per_email) == {200: 10, 429: 4}, panel.log_tail()


def _owner_session(panel, address: str) -> dict[str, str]:
    login = _login(panel, 0, address)
    assert login.status_code == 200, login.content
    return {"Authorization": f"Bearer {login.json()['key']}", "X-Forwarded-For": address}


def _drafts(panel, session, count: int) -> list[str]:
    customer = requests.get(panel.url(0, "/api/v1/customers/"), headers=session, timeout=60).json()["results"][0]
    drafts = []
    for n in range(count):
        created = requests.post(
            panel.url(n, "/api/v1/billing/invoices/"),
            json={"customer": customer["id"], "lines": [{"description": f"Line {n}", "unit_price": "10.00"}]},
            headers=session,
            timeout=60,
        )
        assert created.status_code == 201, created.content
        drafts.append(created.json()["id"])
    return drafts


def test_concurrent_issues_and_payments_never_answer_503(panel):
    session = _owner_session(panel, "198.51.100.50")
    drafts = _drafts(panel, session, 13)

    def post(n: int, path: str, body=None):
        return lambda: requests.post(panel.url(n, path), json=body, headers=session, timeout=120)

    # Twelve invoices issued at once: all numbered, no two alike, no 503.
    issued = _burst([post(n, f"/api/v1/billing/invoices/{pk}/issue/") for n, pk in enumerate(drafts[:12])])
    assert _statuses(issued) == {200: 12}, [r.content[:200] for r in issued if r.status_code != 200]
    numbers = {r.json()["number"] for r in issued}
    assert len(numbers) == 12 and all(numbers)

    # Twelve invoices paid at once, each in full.
    paid = _burst(
        [
            post(
                n,
                f"/api/v1/billing/invoices/{r.json()['id']}/pay/",
                {"amount": r.json()["amount_due"], "method": "cash"},
            )
            for n, r in enumerate(issued)
        ]
    )
    assert _statuses(paid) == {200: 12}, [r.content[:200] for r in paid if r.status_code != 200]
    assert {(r.json()["status"], Decimal(r.json()["amount_due"])) for r in paid} == {("paid", Decimal("0"))}

    # Twelve payments of one invoice at once: recorded one after another, never lost, never 503.
    last = requests.post(panel.url(0, f"/api/v1/billing/invoices/{drafts[12]}/issue/"), headers=session, timeout=60)
    assert last.status_code == 200, last.content
    total = Decimal(last.json()["total"])
    share = (total / 12).quantize(Decimal("0.01"), rounding=ROUND_DOWN)  # all twelve fit in the invoice
    parts = _burst([post(n, f"/api/v1/billing/invoices/{drafts[12]}/pay/", {"amount": str(share), "method": "cash"})
                    for n in range(12)])  # fmt: skip
    assert _statuses(parts) == {200: 12}, [r.content[:200] for r in parts if r.status_code != 200]
    final = requests.get(panel.url(1, f"/api/v1/billing/invoices/{drafts[12]}/"), headers=session, timeout=60).json()
    assert Decimal(final["amount_paid"]) == share * 12
    payments = requests.get(
        panel.url(1, "/api/v1/billing/payments/"), params={"invoice": drafts[12]}, headers=session, timeout=60
    ).json()
    assert payments["count"] == 12


def test_copies_of_one_webhook_at_once_record_one_payment_and_never_503(panel):
    session = _owner_session(panel, "198.51.100.60")
    (draft,) = _drafts(panel, session, 1)
    invoice = requests.post(panel.url(0, f"/api/v1/billing/invoices/{draft}/issue/"), headers=session, timeout=60)
    assert invoice.status_code == 200, invoice.content
    event = {
        "id": "embedded-1",
        "type": "payment.succeeded",
        "data": {"invoice_id": draft, "amount": invoice.json()["total"], "currency": invoice.json()["currency"],
                 "reference": "bank-embedded-1"},
    }  # fmt: skip
    raw = json.dumps(event).encode()

    def deliver(n: int):
        return lambda: requests.post(
            panel.url(n, "/api/v1/billing/webhooks/generic"),
            data=raw,
            headers={"Content-Type": "application/json", "X-Mpanel-Signature": sign_generic(raw, WEBHOOK_SECRET)},
            timeout=120,
        )

    copies = _burst([deliver(n) for n in range(10)], threads=10)
    assert _statuses(copies) == {200: 10}, [r.content[:200] for r in copies if r.status_code != 200]
    final = requests.get(panel.url(1, f"/api/v1/billing/invoices/{draft}/"), headers=session, timeout=60).json()
    assert final["status"] == "paid" and Decimal(final["amount_paid"]) == Decimal(invoice.json()["total"])
    payments = requests.get(
        panel.url(1, "/api/v1/billing/payments/"), params={"invoice": draft}, headers=session, timeout=60
    ).json()
    assert payments["count"] == 1


def test_the_tenant_header_is_read_with_the_credentials_on_sqlite(panel):
    """The credentials' query compiled once per process (apps/common/prepared.py) finds the tenant id among
    SQLite's parameters too, where a UUID is its hex digits: naming the tenant answered 500 on `make run`."""
    session = _owner_session(panel, "198.51.100.77")
    me = requests.get(panel.url(0, "/api/v1/customers/"), headers=session, timeout=60)
    assert me.status_code == 200, me.content
    tenant_id = requests.get(panel.url(0, "/api/v1/tenants/"), headers=session, timeout=60).json()["results"][0]["id"]
    for n in (0, 1):
        named = requests.get(panel.url(n, "/api/v1/customers/"), headers={**session, "X-Tenant-ID": tenant_id},
                             timeout=60)  # fmt: skip
        assert named.status_code == 200, named.content
        assert named.json()["count"] == me.json()["count"] > 0
    unknown = {**session, "X-Tenant-ID": "00000000-0000-4000-8000-000000000000"}
    foreign = requests.get(panel.url(0, "/api/v1/customers/"), headers=unknown, timeout=60)
    assert foreign.status_code == 404
