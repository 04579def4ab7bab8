"""Emails to the customer's billing contact, sent after the transaction commits.

The Celery entry points that send them live in ``apps/billing/tasks.py``; this module queues them
by task name, so it never imports the tasks module (which imports the services).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import signature
from django.conf import settings
from django.db import transaction

from apps.common.display import money
from apps.common.registry import Registry
from apps.tenancy.scoping import all_tenants
from apps.whitelabel.emails import branded_message, render_text
from apps.whitelabel.selectors import brand_for

from ..models import Invoice
from .documents import invoice_pdf

log = logging.getLogger(__name__)

SUBJECTS = {
    "issued": "Invoice {number} from {tenant}",
    "paid": "Receipt for invoice {number} from {tenant}",
    "overdue": "Invoice {number} from {tenant} is overdue",
    "due_soon": "Invoice {number} from {tenant} is due soon",
    "card_failed": "We could not charge your card for invoice {number} from {tenant}",
}

# Where the customer opens the invoice online: callables invoice -> URL | None, added by the customer
# portal (``apps/portal/links.py``: a signed, expiring link with one-click pay). The first URL is used.
INVOICE_LINKS: Registry[Callable] = Registry("invoice link")

# The names of the tasks in apps/billing/tasks.py.
SEND_ONE = "billing.send_invoice_email"
SEND_BATCH = "billing.send_invoice_emails"


def notify_invoice(invoice, event: str) -> None:
    """Queue the email for after the commit; a worker renders the PDF and sends it."""
    invoice_id = str(invoice.pk)

    def queue():
        if settings.MPANEL_JOBS_EAGER:
            try:
                send_invoice_email(invoice_id, event)
            except OSError:  # the committed invoice stands; the email is logged as lost
                log.exception("could not send the %s email of invoice %s", event, invoice_id)
        else:
            signature(SEND_ONE, args=(invoice_id, event)).delay()

    transaction.on_commit(queue)


def notify_invoices(invoices: list, event: str) -> None:
    """``notify_invoice`` for a batch: after the commit, ONE message to the broker (a worker fans it out)."""
    invoice_ids = [str(invoice.pk) for invoice in invoices]

    def queue():
        if settings.MPANEL_JOBS_EAGER:
            for invoice_id in invoice_ids:
                try:
                    send_invoice_email(invoice_id, event)
                except OSError:
                    log.exception("could not send the %s email of invoice %s", event, invoice_id)
            return
        signature(SEND_BATCH, args=(invoice_ids, event)).delay()

    if invoice_ids:
        transaction.on_commit(queue)


def send_invoice_email(invoice_id: str, event: str) -> None:
    """In the tenant's brand (apps/whitelabel/emails.py): its name as sender, its support address as
    Reply-To, text and HTML parts."""
    with all_tenants():
        inv = Invoice.objects.select_related("customer", "tenant").get(pk=invoice_id)
        brand = brand_for(inv.tenant)
        online = next((url for make in INVOICE_LINKS for url in [make(inv)] if url), "")
        # Amounts as people read them (apps/common/display.money: symbol, the currency's digits), never
        # the stored "24.1900 EUR".
        shown = ("total", "amount_due", "credit_applied", "amount_paid", "subtotal", "tax_total")
        amounts = {name: money(getattr(inv, name), inv.currency) for name in shown}
        body = render_text(
            f"billing/email/invoice_{event}.txt",
            {"invoice": inv, "tenant": inv.tenant, "brand": brand, "online_url": online, "amounts": amounts},
        )
        attachments = [(f"{inv.number}.pdf", invoice_pdf(inv), "application/pdf")] if event == "issued" else []
        message = branded_message(
            inv.tenant,
            subject=SUBJECTS[event].format(number=inv.number, tenant=brand.display_name),
            text=body,
            to=[inv.customer.invoice_email],
            attachments=attachments,
        )
    # A mail server that is down must not undo the invoice: the task retries instead.
    message.send(fail_silently=False)
