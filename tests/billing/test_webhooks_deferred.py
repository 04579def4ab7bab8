"""Issue 21: with a broker (``MPANEL_JOBS_EAGER`` off) a webhook is stored and acknowledged at once and
applied by a worker (``billing.webhook_apply``) exactly once, whatever the repeats; an event stored but
never applied (its worker died, its message was lost) is applied by the sweep, once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.billing import tasks
from apps.billing.models import Invoice, Payment, WebhookEvent
from apps.billing.services import webhooks
from tests.billing_support import GENERIC_SECRET, STRIPE_SECRET, generic_payment, issued, post_generic

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _deferred(settings):
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    settings.MPANEL_GENERIC_WEBHOOK_SECRET = GENERIC_SECRET
    settings.MPANEL_JOBS_EAGER = False


def _payment(invoice, event_id: str, amount: str = "1.00") -> dict:
    return generic_payment(invoice, event_id, amount=amount)


def test_answered_when_stored_then_applied_once_by_the_worker(tenant_a, django_capture_on_commit_callbacks):
    invoice = issued(tenant_a)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        first = post_generic(_payment(invoice, "evt-1"))
        again = post_generic(_payment(invoice, "evt-1"))  # a repeated delivery before the worker ran
    assert first.status_code == again.status_code == 200
    assert first.json() == {"received": True, "status": "received"}
    assert WebhookEvent.objects.get().status == "received"
    assert Payment.all_tenants.count() == 0  # acknowledged, not applied yet
    assert len(queued) == 2  # one message per delivery: the second run finds it applied
    event = WebhookEvent.objects.get()
    assert tasks.webhook_apply(str(event.pk)) == "processed"
    assert tasks.webhook_apply(str(event.pk)) == "processed"
    assert Payment.all_tenants.count() == 1
    assert Invoice.all_tenants.get(pk=invoice.pk).amount_paid == 1
    with django_capture_on_commit_callbacks(execute=False) as later:
        assert post_generic(_payment(invoice, "evt-1")).json()["status"] == "processed"
    assert later == []  # an applied event is not queued again
    assert Payment.all_tenants.count() == 1


def test_an_event_whose_worker_died_is_applied_by_the_sweep_once(tenant_a, django_capture_on_commit_callbacks):
    invoice = issued(tenant_a)
    with django_capture_on_commit_callbacks(execute=False):  # the message is lost: no worker ever runs it
        assert post_generic(_payment(invoice, "evt-lost")).status_code == 200
    assert webhooks.sweep() == 0  # too recent: its worker may still be at it
    WebhookEvent.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    assert tasks.webhooks_sweep() == 1
    assert tasks.webhooks_sweep() == 0
    event = WebhookEvent.objects.get()
    assert event.status == "processed" and event.attempts == 1
    assert Payment.all_tenants.count() == 1
    assert Invoice.all_tenants.get(pk=invoice.pk).amount_paid == 1


def test_a_bad_signature_is_still_refused_before_anything_is_stored(tenant_a):
    invoice = issued(tenant_a)
    response = post_generic(_payment(invoice, "evt-x"), "wrong")
    assert response.status_code == 400
    assert WebhookEvent.objects.count() == 0


def test_the_drain_applies_each_pending_event_once_one_invoice_per_transaction(
    tenant_a, django_capture_on_commit_callbacks
):
    """Deliveries ask for a drain only while none is asked for (the cache flag); the drain applies every
    pending event, those of one invoice together, each once, with its audit; a second drain finds nothing."""
    from django.core.cache import cache

    from apps.audit.models import AuditEvent

    cache.delete(webhooks.DRAIN_FLAG)
    first, second = issued(tenant_a), issued(tenant_a)
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(3):
            assert post_generic(_payment(first, f"evt-a{i}")).json()["status"] == "received"
        assert post_generic(_payment(second, "evt-b0", amount="2.00")).json()["status"] == "received"
        assert post_generic({"id": "evt-other", "type": "customer.created", "data": {}}).status_code == 200
    assert cache.get(webhooks.DRAIN_FLAG) is not None  # asked for once; the broker has it
    assert Payment.all_tenants.count() == 0
    assert tasks.webhooks_drain() == 5
    assert cache.get(webhooks.DRAIN_FLAG) is None  # the drain cleared it before its last look
    assert tasks.webhooks_drain() == 0
    assert Invoice.all_tenants.get(pk=first.pk).amount_paid == 3
    assert Invoice.all_tenants.get(pk=second.pk).amount_paid == 2
    assert Payment.all_tenants.count() == 4
    statuses = dict(WebhookEvent.objects.values_list("event_id", "status"))
    assert statuses == {"evt-a0": "processed", "evt-a1": "processed", "evt-a2": "processed",
                        "evt-b0": "processed", "evt-other": "ignored"}  # fmt: skip
    assert set(WebhookEvent.objects.values_list("attempts", flat=True)) == {1}
    assert AuditEvent.objects.filter(action="invoice.payment").count() == 4
    # Repeats after the drain change nothing and ask for nothing.
    with django_capture_on_commit_callbacks(execute=False) as later:
        assert post_generic(_payment(first, "evt-a1")).json()["status"] == "processed"
    assert later == []
    assert Payment.all_tenants.count() == 4


def test_an_event_a_worker_holds_is_applied_once_by_the_drain_and_the_worker(tenant_a):
    """``process`` (an old message, the sweep) and the drain both lock the row: whichever runs second
    finds it final."""
    invoice = issued(tenant_a)
    assert post_generic(_payment(invoice, "evt-both")).status_code == 200
    event = WebhookEvent.objects.get()
    assert tasks.webhook_apply(str(event.pk)) == "processed"
    assert tasks.webhooks_drain() == 0
    assert Invoice.all_tenants.get(pk=invoice.pk).amount_paid == 1
