"""Issue 21: a webhook delivery counts against the ``public`` rate of its address only when it is refused
(a bad signature, a bad body: answered 429 beyond the rate, as before, with nothing stored); a verified one is
never counted nor refused for the rate (the provider's bursts and retries get through, and the answer saves
the throttle's round trip)."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from apps.billing.models import WebhookEvent
from tests.billing_support import (
    GENERIC_SECRET,
    GENERIC_WEBHOOK,
    STRIPE_SECRET,
    post_generic,
    post_stripe,
    stripe_event,
)
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _rate(settings):
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = GENERIC_SECRET
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    settings.MPANEL_JOBS_EAGER = False
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"public": "2/min"}}
    cache.clear()
    yield
    cache.clear()


def _generic(event_id: str, secret: str = GENERIC_SECRET):
    return post_generic({"id": event_id, "type": "customer.created", "data": {}}, secret)


def test_verified_deliveries_are_not_counted_nor_refused_for_the_rate():
    assert [_generic(f"evt-{i}").status_code for i in range(5)] == [200] * 5
    assert WebhookEvent.objects.count() == 5
    # The address's two refusals are still allowed: the five verified ones counted nothing.
    assert [_generic(f"bad-{i}", secret="wrong").status_code for i in range(3)] == [400, 400, 429]
    assert WebhookEvent.objects.count() == 5


def test_refused_deliveries_are_throttled_as_before_and_store_nothing():
    codes = [_generic(f"bad-{i}", secret="wrong").status_code for i in range(2)]
    refused = _generic("bad-2", secret="wrong")
    assert codes == [400, 400]
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "throttled" in refused.json()["detail"].lower()
    unsigned = client_for().post(GENERIC_WEBHOOK, b"{}", content_type="application/json")
    assert unsigned.status_code == 429
    assert client_for().get(GENERIC_WEBHOOK).status_code == 429  # a wrong method is refused alike
    # A bad body (signed, but not an event) is a refusal too.
    raw = b'{"id": 5}'
    bad_body = post_generic(raw)
    assert bad_body.status_code == 429
    assert WebhookEvent.objects.count() == 0
    # The provider's verified deliveries still get through from the throttled address.
    assert _generic("evt-ok").status_code == 200
    stripe = post_stripe(stripe_event("evt_s1", "customer.created", {"id": "cus_1"}))
    assert stripe.status_code == 200
    assert WebhookEvent.objects.count() == 2
