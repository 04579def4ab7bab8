"""Emails to the customer's billing contact, sent after the transaction commits."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string

SUBJECTS = {
    "issued": "Invoice {number} from {tenant}",
    "paid": "Receipt for invoice {number} from {tenant}",
    "overdue": "Invoice {number} from {tenant} is overdue",
    "due_soon": "Invoice {number} from {tenant} is due soon",
}


def notify_invoice(invoice, event: str) -> None:
    invoice_id = invoice.pk

    def send():
        from apps.tenancy.scoping import all_tenants

        from ..models import Invoice

        with all_tenants():
            inv = Invoice.objects.select_related("customer", "tenant").get(pk=invoice_id)
            body = render_to_string(f"billing/email/invoice_{event}.txt", {"invoice": inv, "tenant": inv.tenant})
            message = EmailMessage(
                subject=SUBJECTS[event].format(number=inv.number, tenant=inv.tenant.name),
                body=body,
                from_email=settings.DEFAULT_FROM_EMAIL,
                to=[inv.customer.invoice_email],
            )
            if event == "issued":
                from .documents import invoice_pdf

                message.attach(f"{inv.number}.pdf", invoice_pdf(inv), "application/pdf")
            message.send(fail_silently=True)

    transaction.on_commit(send)
