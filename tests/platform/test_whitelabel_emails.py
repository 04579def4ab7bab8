"""Customers' e-mails in the tenant's brand: amounts as people read them, the sender (the tenant's
own address, DKIM-signed, when its mail domain is on the platform; else the platform's address under
the tenant's name, with Reply-To)."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.cache import cache

from apps.billing.services import invoices, notifications
from tests.billing_support import draft


@pytest.fixture(autouse=True)
def _clean(settings):
    settings.MPANEL_JOBS_EAGER = True
    settings.MPANEL_DISPLAY_LOCALE = "en_US"
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
def test_invoice_emails_show_amounts_through_display_money(tenant_a, django_capture_on_commit_callbacks):
    fx = tenant_a
    invoice = draft(fx, lines=[{"description": "Hosting", "quantity": "1", "unit_price": "1999.99", "tax_rate": "21"}])
    with fx.scope(), django_capture_on_commit_callbacks(execute=True):
        invoice = invoices.invoice_issue(invoice=invoice)
    mail.outbox.clear()
    for event in ("issued", "paid", "due_soon", "overdue"):
        notifications.send_invoice_email(str(invoice.pk), event)
    assert len(mail.outbox) == 4
    for message in mail.outbox:
        html = message.alternatives[0][0]
        assert "€2,419.99" in message.body and "€2,419.99" in html, message.body
        assert "2419.9900" not in message.body and " EUR" not in message.body, message.body
