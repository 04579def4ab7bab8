"""PDFs of invoices and credit notes, rendered from one HTML template by WeasyPrint.

In the tenant's brand (apps/whitelabel): its logo, and the seller's details an EU invoice must carry
(VAT directive 2006/112/EC art. 226: the supplier's full name and address and VAT id), its footer
and terms; never the platform's name."""

from __future__ import annotations

from django.template.loader import render_to_string

from apps.common.money import quantize
from apps.whitelabel.selectors import BrandView, brand_for, seller_from_snapshot

from ..models import CreditNote, Invoice, InvoiceStatus


def _fmt(value, currency) -> str:
    return str(quantize(value, currency))


def seller_of(document: Invoice | CreditNote) -> BrandView:
    """Who sold: an issued document shows the seller as frozen when it was issued (``seller_details``,
    EU invoices are never rewritten by a later change of the brand); a draft, or a document issued
    before snapshots existed, shows the brand as it is now."""
    snapshot = document.seller_details or {}
    if snapshot and getattr(document, "status", None) != InvoiceStatus.DRAFT:
        return seller_from_snapshot(document.tenant_id, snapshot)
    return brand_for(document.tenant_id)


def _pdf(context: dict, brand: BrandView) -> bytes:
    import weasyprint  # imported here: it loads Pango, which only the PDF views need

    html = render_to_string("billing/document.html", {**context, "brand": brand, "logo": brand.logo_data_uri()})
    return weasyprint.HTML(string=html).write_pdf()


def invoice_pdf(invoice: Invoice) -> bytes:
    cur = invoice.currency
    bill_to = invoice.billing_details or {
        "name": invoice.customer.name, "company": invoice.customer.company, "email": invoice.customer.invoice_email,
        "tax_id": invoice.customer.tax_id, "address": [],
    }  # fmt: skip
    lines = [
        {
            "description": line.description,
            "period": f"{line.period_start} to {line.period_end}" if line.period_start and line.period_end else "",
            "quantity": line.quantity.normalize(),
            "unit_price": line.unit_price.normalize(),
            "discount": _fmt(line.discount, cur) if line.discount else "",
            "tax": f"{line.tax_rate.normalize()}%" if line.tax_rate else "",
            "total": _fmt(line.amount - line.discount, cur),
        }
        for line in invoice.lines.all()
    ]
    totals = [("Subtotal", _fmt(invoice.subtotal, cur))]
    if invoice.discount_total:
        totals.append(("Discounts", "-" + _fmt(invoice.discount_total, cur)))
    totals += [("Tax", _fmt(invoice.tax_total, cur)), ("Total", _fmt(invoice.total, cur))]
    if invoice.credit_applied:
        totals.append(("Account credit applied", "-" + _fmt(invoice.credit_applied, cur)))
    if invoice.amount_credited:
        totals.append(("Credit notes", "-" + _fmt(invoice.amount_credited, cur)))
    if invoice.amount_paid:
        totals.append(("Paid", "-" + _fmt(invoice.amount_paid, cur)))
    totals.append(("Amount due", _fmt(invoice.amount_due, cur)))
    watermark = {InvoiceStatus.DRAFT: "DRAFT", InvoiceStatus.VOID: "VOID", InvoiceStatus.PAID: "PAID"}.get(
        invoice.status, ""
    )
    return _pdf({
        "title": "Invoice", "number": invoice.number or "Draft", "tenant": invoice.tenant, "bill_to": bill_to,
        "issue_date": invoice.issue_date, "due_date": invoice.due_date, "lines": lines, "totals": totals,
        "currency": cur, "notes": invoice.notes, "watermark": watermark,
    }, seller_of(invoice))  # fmt: skip


def credit_note_pdf(note: CreditNote) -> bytes:
    cur = note.currency
    lines = [
        {"description": line.description, "quantity": "", "unit_price": "", "discount": "",
         "tax": _fmt(line.tax_amount, cur), "total": _fmt(line.amount, cur), "period": ""}
        for line in note.lines.all()
    ]  # fmt: skip
    totals = [("Subtotal", _fmt(note.subtotal, cur)), ("Tax", _fmt(note.tax_total, cur)), ("Total credited",
              _fmt(note.total, cur))]  # fmt: skip
    return _pdf({
        "title": "Credit note", "number": note.number, "tenant": note.tenant,
        "bill_to": note.invoice.billing_details, "issue_date": note.issued_at.date(), "reference": note.invoice.number,
        "lines": lines, "totals": totals, "currency": cur, "notes": note.reason, "watermark": "",
    }, seller_of(note))  # fmt: skip
