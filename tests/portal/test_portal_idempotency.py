"""Idempotency-Key on the portal API: a customer's storefront that retries a POST (a timeout, a double
click) gets the first answer again and nothing is made twice; keys are the portal user's own, apart
from every other portal user's and every staff user's (apps/common/idempotency.py)."""

from __future__ import annotations

import pytest

from apps.common.models import IdempotencyRecord
from apps.orders.models import Order

from .support import api_client

ORDERS = "/api/v1/portal/orders"


def _order(client, plan, key: str, cycle: str = "monthly"):
    return client.post(
        ORDERS, {"items": [{"product": str(plan.pk), "cycle": cycle}]}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )


def _orders_of(world) -> int:
    return Order.all_tenants.filter(customer=world.customer).count()


@pytest.mark.django_db
def test_a_repeated_order_is_answered_again_and_made_once(portal):
    a1 = portal[0]
    client = api_client(a1.users["owner"])
    before = _orders_of(a1)
    first = _order(client, a1.plan, "retry-1")
    assert first.status_code == 201, first.content
    again = _order(client, a1.plan, "retry-1")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert _orders_of(a1) == before + 1
    record = IdempotencyRecord.objects.get(key="retry-1")
    assert record.principal == f"portal:{a1.users['owner'].pk}" and record.user is None


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_refused(portal):
    a1 = portal[0]
    client = api_client(a1.users["owner"])
    assert _order(client, a1.plan, "retry-2").status_code == 201
    other = _order(client, a1.plan, "retry-2", cycle="annually")
    assert other.status_code == 400
    assert "Idempotency-Key" in other.json()


@pytest.mark.django_db
def test_keys_belong_to_one_portal_user(portal):
    """Another user of the same customer, or of another customer, with the same key makes its own order:
    a key is never a way to read someone else's answer."""
    a1, a2, _b1 = portal
    assert _order(api_client(a1.users["owner"]), a1.plan, "same-key").status_code == 201
    before_billing = _orders_of(a1)
    colleague = _order(api_client(a1.users["billing"]), a1.plan, "same-key")
    assert colleague.status_code == 201
    assert "Idempotent-Replayed" not in colleague
    assert _orders_of(a1) == before_billing + 1
    neighbour = _order(api_client(a2.users["owner"]), a2.plan, "same-key")
    assert neighbour.status_code == 201 and "Idempotent-Replayed" not in neighbour
    assert IdempotencyRecord.objects.filter(key="same-key").count() == 3
