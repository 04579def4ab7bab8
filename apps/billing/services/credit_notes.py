"""Credit notes: corrections of issued invoices, with their own gapless numbers.

A credit note never takes an invoice's credited total above its total, nor a line's above what
that line charged. It first reduces what is still due on the invoice; whatever the customer had
already paid becomes customer credit.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.money import quantize
from apps.whitelabel.selectors import seller_snapshot

from .. import amounts
from ..locks import lock_invoice
from ..models import CreditNote, CreditNoteLine, CreditTransaction, Invoice, InvoiceLine, InvoiceStatus
from . import numbering
from .hooks import invoice_paid
from .invoices import billing_settings, mark_paid_if_settled

ZERO = Decimal(0)
CREDITABLE = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE)


def _credited_per_line(invoice: Invoice) -> dict:
    rows = (
        CreditNoteLine.all_tenants.filter(credit_note__invoice=invoice, invoice_line__isnull=False)
        .values("invoice_line")
        .annotate(net=Sum("amount"), tax=Sum("tax_amount"))
    )
    return {row["invoice_line"]: (row["net"], row["tax"]) for row in rows}


def _issue(invoice: Invoice, lines: list[CreditNoteLine], reason: str, *, to_balance: bool) -> CreditNote:
    subtotal = sum((x.amount for x in lines), ZERO)
    tax = sum((x.tax_amount for x in lines), ZERO)
    total = subtotal + tax
    if total <= 0:
        raise InvalidInput("A credit note must credit something.", field="lines")
    if invoice.amount_credited + total > invoice.total:
        raise InvalidInput(
            f"At most {invoice.total - invoice.amount_credited} {invoice.currency} is left to credit on this invoice.",
            field="amount",
        )
    with audit.change(invoice, "invoice.credit"):  # recorded after the credit note's own event
        conf = billing_settings(invoice.tenant)
        number = numbering.next_number(
            tenant=invoice.tenant, series="credit_note", fmt=conf.credit_note_number_format, on=timezone.localdate()
        )
        applied = min(total, invoice.amount_due)
        rest = total - applied
        note = CreditNote.objects.create(
            tenant_id=invoice.tenant_id, invoice=invoice, customer_id=invoice.customer_id, number=number,
            currency=invoice.currency, reason=reason[:500], subtotal=subtotal, tax_total=tax, total=total,
            applied_to_invoice=applied, credited_to_balance=rest if to_balance else ZERO, issued_at=timezone.now(),
            seller_details=seller_snapshot(invoice.tenant),
        )  # fmt: skip
        for line in lines:
            line.credit_note = note
            line.tenant_id = invoice.tenant_id
        CreditNoteLine.objects.bulk_create(lines)
        invoice.amount_credited += total
        invoice.amount_due -= applied
        newly_paid = mark_paid_if_settled(invoice)
        invoice.save()
        if rest > 0 and to_balance:
            CreditTransaction.objects.create(
                tenant_id=invoice.tenant_id, customer_id=invoice.customer_id, currency=invoice.currency, amount=rest,
                kind=CreditTransaction.Kind.CREDIT_NOTE, invoice=invoice, credit_note=note,
                description=f"Credit note {number} on paid {invoice.number}",
            )  # fmt: skip
        audit.record(action="credit_note.create", obj=note, after={"number": number, "total": str(total)})
    if newly_paid:
        invoice_paid(invoice)
    return note


@transaction.atomic
def credit_note_create(*, invoice: Invoice, lines: list[dict] | None = None, reason: str = "") -> CreditNote:
    """``lines`` = [{"invoice_line": id, "amount": net}] credits parts of lines; None credits all that is left."""
    invoice = lock_invoice(invoice)
    if invoice.status not in CREDITABLE:
        raise Conflict(f"A {invoice.status} invoice cannot be credited.")
    invoice_lines = {line.pk: line for line in InvoiceLine.all_tenants.filter(invoice=invoice)}
    done = _credited_per_line(invoice)
    built: list[CreditNoteLine] = []
    if lines is None:
        for line in invoice_lines.values():
            net_done, tax_done = done.get(line.pk, (ZERO, ZERO))
            net = line.amount - line.discount - net_done
            if net > 0:
                built.append(CreditNoteLine(invoice_line=line, description=line.description, amount=net,
                                            tax_amount=line.tax_amount - tax_done,
                                            total=net + line.tax_amount - tax_done))  # fmt: skip
    else:
        seen = set()
        for item in lines:
            line = invoice_lines.get(item["invoice_line"])
            if line is None:
                raise InvalidInput("That line is not on this invoice.", field="lines")
            if line.pk in seen:
                raise InvalidInput("A line may appear once per credit note.", field="lines")
            seen.add(line.pk)
            net_done, tax_done = done.get(line.pk, (ZERO, ZERO))
            left_net = line.amount - line.discount - net_done
            net = Decimal(item["amount"])
            if net <= 0 or quantize(net, invoice.currency) != net:
                raise InvalidInput("Each credited amount must be positive, in the currency's minor units.",
                                   field="lines")  # fmt: skip
            if net > left_net:
                raise InvalidInput(f"At most {left_net} can be credited on '{line.description}'.", field="lines")
            tax = amounts.tax_for_net(net, line.tax_rate, invoice.currency)
            tax = min(tax, line.tax_amount - tax_done)
            built.append(CreditNoteLine(invoice_line=line, description=line.description, amount=net, tax_amount=tax,
                                        total=net + tax))  # fmt: skip
    return _issue(invoice, built, reason, to_balance=True)


def credit_note_for_refund(*, invoice: Invoice, amount: Decimal, reason: str) -> CreditNote:
    """The credit note that goes with a refund: the money went back, so nothing goes to the balance."""
    tax = quantize(amount * invoice.tax_total / invoice.total, invoice.currency) if invoice.total else ZERO
    line = CreditNoteLine(description=reason[:500], amount=amount - tax, tax_amount=tax, total=amount)
    return _issue(invoice, [line], reason, to_balance=False)
