"""Amounts from every source are held to one rule (apps.common.money.parse_amount), and signed
webhooks with hostile payloads never answer 500: an event that cannot apply is stored as failed
(docs/api.md), a body that is not an event is a 400 with nothing stored."""

import json
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from apps.billing.models import Invoice, Payment, WebhookEvent
from apps.catalog.models import Product
from apps.common.exceptions import InvalidInput
from apps.common.money import MAX_AMOUNT, parse_amount, render_amount
from tests.billing_support import (
    GENERIC_SECRET,
    STRIPE_SECRET,
    customer_of,
    draft,
    issued,
    post_generic,
    post_stripe,
    stripe_event,
)
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

BAD_AMOUNTS = ["NaN", "Infinity", "-Infinity", "1e309", "99999999999999999999", "-5", "1.99999", "", "x" * 100]


@pytest.fixture(autouse=True)
def _secrets(settings):
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = GENERIC_SECRET


@pytest.mark.parametrize("value", [*BAD_AMOUNTS, 10**30, 1.5, True, None, [], {}])
@pytest.mark.parametrize("currency", ["EUR", "JPY", "KWD"])
def test_the_money_rule_refuses_what_no_column_or_currency_holds(value, currency):
    with pytest.raises(InvalidInput) as caught:
        parse_amount(value, currency, field="amount")
    assert caught.value.field == "amount"


@pytest.mark.parametrize(("value", "currency"), [("10.55", "JPY"), ("1.2345", "KWD"), ("0.001", "EUR")])
def test_an_amount_finer_than_its_currency_is_refused(value, currency):
    with pytest.raises(InvalidInput, match="more decimals"):
        parse_amount(value, currency)
    assert parse_amount("10", "JPY") == Decimal(10) and parse_amount("99999999999999", "KWD") <= MAX_AMOUNT


def _generic(tenant, body: dict | list | bytes):
    return post_generic(body)


@pytest.mark.parametrize("kind", ["payment.succeeded", "payment.failed", "refund.succeeded"])
@pytest.mark.parametrize("amount", [*BAD_AMOUNTS, 10**30, 1e300, None, [], {"a": 1}])
def test_a_generic_event_with_a_bad_amount_is_stored_failed(tenant_a, kind, amount):
    invoice = issued(tenant_a)
    data = {"invoice_id": str(invoice.pk), "amount": amount, "currency": "EUR", "reference": "ref-1"}
    response = _generic(tenant_a, {"id": f"evt-{kind}", "type": kind, "data": data})
    assert response.status_code == 200, response.content
    event = WebhookEvent.objects.get(event_id=f"evt-{kind}")
    # A refund names a payment this invoice never had: unmatched before its amount is read.
    assert event.status in ({"failed", "unmatched"} if kind == "refund.succeeded" else {"failed"}), event.error
    assert not Payment.all_tenants.exists()
    assert Invoice.all_tenants.get(pk=invoice.pk).amount_paid == 0
    assert client_for(tenant_a.owner, tenant_a.tenant).get(reverse("payment-list")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [[], "text", 5, None, {"id": "e", "type": "payment.succeeded", "data": None}, {"id": ["e"], "type": "x"},
     {"id": "e" * 300, "type": "payment.succeeded", "data": {}}, b"[" * 100_000, b'{"a":' * 5000, b"{bad"],
    ids=lambda b: repr(b)[:30],
)  # fmt: skip
def test_a_signed_generic_body_that_is_not_an_event_is_a_400_nothing_stored(tenant_a, body):
    response = _generic(tenant_a, body)
    assert response.status_code == 400, response.content
    assert not WebhookEvent.objects.exists()


STRIPE_OBJECTS = {
    "data null": {"data": None},
    "object a list": {"data": {"object": []}},
    "metadata a list": {"data": {"object": {"currency": "eur", "amount_received": 100, "metadata": []}}},
    "10^30 received": {"data": {"object": {"currency": "eur", "amount_received": 10**30, "id": "pi_x"}}},
    "amount a string": {"data": {"object": {"currency": "eur", "amount_received": "1e309", "id": "pi_x"}}},
    "amount a float": {"data": {"object": {"currency": "eur", "amount_received": 1e300, "id": "pi_x"}}},
    "unknown currency": {"data": {"object": {"currency": "zzz", "amount_received": 100, "id": "pi_x"}}},
    "created 10^30": {"created": 10**30},
}


@pytest.mark.parametrize("kind", ["payment_intent.succeeded", "checkout.session.completed",
                                  "payment_intent.payment_failed", "charge.refunded"])  # fmt: skip
@pytest.mark.parametrize("shape", list(STRIPE_OBJECTS))
def test_a_signed_stripe_event_of_a_hostile_shape_is_never_a_500(tenant_a, kind, shape):
    invoice = issued(tenant_a)
    event = stripe_event("evt_hostile", kind, {})
    event.update(json.loads(json.dumps(STRIPE_OBJECTS[shape])))
    obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
    if isinstance(obj, dict):
        obj.setdefault("metadata", {"mpanel_invoice_id": str(invoice.pk)})
        obj.setdefault("payment_status", "paid")
    response = post_stripe(event)
    assert response.status_code == 200, response.content
    assert WebhookEvent.objects.get().status in {"failed", "unmatched", "processed", "ignored"}
    assert not Payment.all_tenants.filter(status="succeeded").exists()


@pytest.mark.parametrize("body", [b"[]", b"null", b"[" * 100_000, b'{"id": 1, "type": []}'], ids=repr)
def test_a_signed_stripe_body_that_is_not_an_event_is_a_400(body):
    response = post_stripe(body.decode())
    assert response.status_code == 400, response.content
    assert not WebhookEvent.objects.exists()


# -- invoices and the catalog ------------------------------------------------------------------------


def test_a_jpy_line_of_10_55_is_refused_naming_the_line(tenant_a):
    client = client_for(tenant_a.owner, tenant_a.tenant)
    customer = customer_of(tenant_a, currency="JPY")
    lines = [{"description": "A", "unit_price": "100"}, {"description": "B", "unit_price": "10.55"}]
    body = {"customer": str(customer.pk), "currency": "JPY", "lines": lines}
    response = client.post(reverse("invoice-list"), body, format="json")
    assert response.status_code == 400 and "Line 2" in response.json()["lines"][0], response.content
    assert not Invoice.all_tenants.exists()


def test_switching_a_draft_to_a_currency_its_lines_break_is_refused_and_changes_nothing(tenant_a):
    invoice = draft(tenant_a)  # EUR 10.00 and 9.99
    client = client_for(tenant_a.owner, tenant_a.tenant)
    url = reverse("invoice-detail", kwargs={"pk": invoice.pk})
    before = client.get(url).json()
    response = client.patch(url, {"currency": "JPY"}, format="json")
    assert response.status_code == 400 and "Line 2" in response.json()["lines"][0], response.content
    assert client.get(url).json() == before


@pytest.mark.parametrize("price", ["1e309", "NaN", "Infinity", "-1", "99999999999999999999"])
def test_a_metered_unit_price_out_of_range_is_a_400(tenant_a, price):
    client = client_for(tenant_a.owner, tenant_a.tenant)
    body = {"name": "Metered", "type": "service", "metering": {"unit": "GB", "unit_prices": {"EUR": price}}}
    response = client.post(reverse("product-list"), body, format="json")
    assert response.status_code == 400 and "metering" in response.json(), response.content
    with tenant_a.scope():
        assert not Product.objects.exists()


def test_a_product_config_nested_900_levels_is_a_400(tenant_a):
    client = client_for(tenant_a.owner, tenant_a.tenant)
    config = '{"a":' * 900 + "1" + "}" * 900
    raw = '{"name": "Deep", "type": "service", "config": ' + config + "}"
    response = client.generic("POST", reverse("product-list"), raw, content_type="application/json")
    assert response.status_code == 400 and "deeper" in response.json()["detail"], response.content
    with tenant_a.scope():
        assert not Product.objects.exists()


# -- rows already stored ------------------------------------------------------------------------------


def test_a_nan_amount_cannot_be_stored_behind_the_api(tenant_a):
    invoice = issued(tenant_a)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE billing_invoice SET amount_paid = 'NaN' WHERE id = %s", [invoice.pk])
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE billing_invoiceline SET unit_price = 'NaN' WHERE invoice_id = %s", [invoice.pk])


def test_a_row_the_serializer_cannot_quantize_does_not_take_its_list_down(tenant_a):
    """A payment in a currency we do not know (written behind the API) is shown as stored."""
    invoice = issued(tenant_a)
    client = client_for(tenant_a.owner, tenant_a.tenant)
    assert client.post(reverse("invoice-pay", kwargs={"pk": invoice.pk}), {"amount": "1.00", "method": "cash"},
                       format="json").status_code == 200  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("UPDATE billing_payment SET currency = 'ZZZ'")
    response = client.get(reverse("payment-list"))
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["amount"] == "1.0000"
    assert render_amount(Decimal("NaN"), "EUR") == "NaN" and render_amount(Decimal("1.5"), "JPY") == "2"
