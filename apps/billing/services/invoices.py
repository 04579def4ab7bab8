"""Invoice lifecycle: draft → open → paid, open → void, open → uncollectible → paid | void.

Drafts are editable and carry no number; issuing numbers, freezes and applies the customer's
credit; issued invoices never change again except through payments and credit notes.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.money import CURRENCIES, MAX_AMOUNT, parse_amount
from apps.customers.models import Customer
from apps.whitelabel.selectors import seller_snapshot

from .. import amounts, bulk
from ..locks import lock_customer, lock_customers, lock_invoice
from ..models import BillingSettings, CreditTransaction, Invoice, InvoiceLine, InvoiceStatus
from . import numbering, tenant_settings
from .credit import credit_balance
from .hooks import invoice_paid, invoice_voided, invoices_issued
from .notifications import notify_invoice, notify_invoices

ZERO = Decimal(0)
_UNREAD = object()


def billing_settings(tenant) -> BillingSettings:
    settings_row, _ = BillingSettings.objects.get_or_create(tenant_id=getattr(tenant, "pk", tenant))
    return settings_row


def _check_currency(currency: str) -> str:
    currency = (currency or "").upper()
    if currency not in CURRENCIES:
        raise InvalidInput("Unknown ISO 4217 currency code.", field="currency")
    return currency


def _build_lines(invoice: Invoice, lines: list[dict[str, Any]]) -> list[InvoiceLine]:
    """The line rows of ``invoice`` (unsaved), with the invoice's totals set from them."""
    computed = []
    rows = []
    for position, data in enumerate(lines):
        # Money in the invoice's currency, held to it (its exponent, the column's range): a JPY line
        # of 10.55, or a EUR draft's 19.99 once the draft is switched to JPY, names its line.
        line = f"Line {position + 1}"
        unit_price = parse_amount(data["unit_price"], invoice.currency, field="lines", label=f"{line}: unit price")
        discount = parse_amount(data.get("discount") or 0, invoice.currency, field="lines", label=f"{line}: discount")
        figures = amounts.line_amounts(
            quantity=Decimal(data.get("quantity", 1)),
            unit_price=unit_price,
            discount=discount,
            tax_rate=Decimal(data.get("tax_rate") or 0),
            currency=invoice.currency,
            prices_include_tax=invoice.prices_include_tax,
        )
        start, end = data.get("period_start"), data.get("period_end")
        if start and end and end < start:
            raise InvalidInput("A line's period cannot end before it starts.", field="lines")
        computed.append(figures)
        rows.append(
            InvoiceLine(
                tenant_id=invoice.tenant_id,
                invoice=invoice,
                position=position,
                description=data["description"],
                quantity=Decimal(data.get("quantity", 1)),
                unit_price=unit_price,
                discount=figures.discount,
                tax_rate=Decimal(data.get("tax_rate") or 0),
                period_start=start,
                period_end=end,
                amount=figures.amount,
                tax_amount=figures.tax,
                total=figures.total,
            )
        )
    t = amounts.totals(computed)
    if max(t.subtotal, t.total) > MAX_AMOUNT:
        raise InvalidInput(f"The total is larger than the maximum ({MAX_AMOUNT.normalize():f}).", field="lines")
    invoice.subtotal, invoice.discount_total, invoice.tax_total, invoice.total = (
        t.subtotal,
        t.discount_total,
        t.tax_total,
        t.total,
    )
    invoice.amount_due = t.total
    return rows


def _write_lines(invoice: Invoice, lines: list[dict[str, Any]]) -> None:
    invoice.lines.all().delete()
    InvoiceLine.objects.bulk_create(_build_lines(invoice, lines))


@transaction.atomic
def invoice_create(
    *,
    tenant,
    customer: Customer,
    lines: list[dict],
    currency: str | None = None,
    due_date=None,
    notes: str = "",
    by_hand: bool = False,
) -> Invoice:
    """A draft. ``by_hand`` (the API's and the admin's): in one of the tenant's currencies
    (``BillingSettings.currencies``); a renewal of what was sold before is billed in its own."""
    currency = _check_currency(currency or customer.currency)
    if by_hand:
        tenant_settings.check_currency_accepted(tenant, currency)
    invoice = Invoice.objects.create(
        tenant=tenant,
        customer=customer,
        currency=currency,
        due_date=due_date,
        notes=notes,
        prices_include_tax=tenant_settings.settings_of(tenant).prices_include_tax,
    )
    _write_lines(invoice, lines)
    invoice.save()
    audit.created(invoice, "invoice.create")
    return invoice


@transaction.atomic
def invoice_update_draft(*, invoice: Invoice, data: dict) -> Invoice:
    invoice = lock_invoice(invoice)
    if invoice.status != InvoiceStatus.DRAFT:
        raise Conflict("Only a draft can be edited; correct an issued invoice with a credit note.")
    with audit.change(invoice, "invoice.update"):
        if "currency" in data:
            invoice.currency = _check_currency(data["currency"])
            tenant_settings.check_currency_accepted(invoice.tenant_id, invoice.currency)
        for field in ("due_date", "notes"):
            if field in data:
                setattr(invoice, field, data[field])
        if "lines" in data or "currency" in data:
            lines = data.get("lines")
            if lines is None:
                lines = [
                    {k: getattr(line, k) for k in ("description", "quantity", "unit_price", "discount", "tax_rate",
                                                   "period_start", "period_end")}
                    for line in invoice.lines.all()
                ]  # fmt: skip
            _write_lines(invoice, lines)
        invoice.save()
    return invoice


@transaction.atomic
def invoice_delete_draft(*, invoice: Invoice) -> None:
    invoice = lock_invoice(invoice)
    if invoice.status != InvoiceStatus.DRAFT:
        raise Conflict("Only a draft can be deleted; void an issued invoice instead.")
    audit.deleted(invoice, "invoice.delete")
    invoice.delete()


def _billing_details(customer: Customer, countries: dict | None = None) -> dict:
    """The customer's details frozen on an invoice. ``countries``: a batch's memo of the country as
    text by its stored code (django-countries builds and checks a ``Country`` per read, which was a
    tenth of a billing batch)."""
    stored = customer.__dict__.get("country", _UNREAD)
    if countries is None or stored is _UNREAD:
        country = str(customer.country or "")
    elif stored in countries:
        country = countries[stored]
    else:
        country = countries[stored] = str(customer.country or "")
    return {
        "name": customer.name,
        "company": customer.company,
        "email": customer.invoice_email,
        "tax_id": customer.tax_id,
        "address": [customer.address_line1, customer.address_line2, customer.city, customer.state,
                    customer.postal_code, country],
    }  # fmt: skip


def _refresh_due(invoice: Invoice) -> None:
    invoice.amount_due = invoice.total - invoice.amount_paid - invoice.amount_credited - invoice.credit_applied
    if invoice.amount_due < 0:
        raise Conflict("This would make the amount due negative.")


def mark_paid_if_settled(invoice: Invoice) -> bool:
    if invoice.amount_due == 0 and invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = timezone.now()
        return True
    return False


@transaction.atomic
def invoice_issue(*, invoice: Invoice, apply_credit: bool = True) -> Invoice:
    invoice = lock_invoice(invoice)
    if invoice.status != InvoiceStatus.DRAFT:
        raise Conflict(f"A {invoice.status} invoice cannot be issued.")
    if not invoice.lines.exists():
        raise Conflict("An invoice needs at least one line to be issued.")
    with audit.change(invoice, "invoice.issue"):
        conf = billing_settings(invoice.tenant)
        today = timezone.localdate()
        invoice.number = numbering.next_number(
            tenant=invoice.tenant, series="invoice", fmt=conf.invoice_number_format, on=today
        )
        invoice.status = InvoiceStatus.OPEN
        invoice.issue_date = today
        invoice.due_date = invoice.due_date or today + timedelta(days=conf.payment_terms_days)
        invoice.issued_at = timezone.now()
        invoice.billing_details = _billing_details(invoice.customer)
        invoice.seller_details = seller_snapshot(invoice.tenant)
        if apply_credit and invoice.total > 0:
            lock_customer(invoice.customer)
            available = credit_balance(customer=invoice.customer, currency=invoice.currency)
            use = min(available, invoice.total)
            if use > 0:
                invoice.credit_applied = use
                CreditTransaction.objects.create(
                    tenant_id=invoice.tenant_id, customer=invoice.customer, currency=invoice.currency, amount=-use,
                    kind=CreditTransaction.Kind.APPLIED, invoice=invoice, description=f"Applied to {invoice.number}",
                )  # fmt: skip
        _refresh_due(invoice)
        mark_paid_if_settled(invoice)
        invoice.save()
    notify_invoice(invoice, "issued")
    if invoice.status == InvoiceStatus.PAID:
        invoice_paid(invoice)
    else:
        invoices_issued([invoice])
    return invoice


def create_issued_many(
    *, tenant, conf: BillingSettings, drafts: list[dict], run_paid_hooks: bool = True
) -> list[Invoice]:
    """Create and issue several invoices of one tenant at once (the billing run's batches).

    Each draft is ``{"customer", "currency", "lines", "audit": [(action, after), ...]}`` and
    optionally ``"due_date"`` (as ``invoice_create``'s; default: the payment terms) and ``"line_ids"``
    (the primary keys of its first lines, for rows inserted before them that point at them). Writes
    the same rows and audit events as ``invoice_create`` + ``invoice_issue`` of each, with a
    constant number of queries for the whole batch: the number sequence is locked once for a
    block of consecutive numbers (gapless: the block is given back if the transaction rolls
    back), the customers are locked once in pk order before their credit balances are read.
    Must run in the caller's transaction.

    An invoice the customer's credit pays in full is issued paid, and the invoice-paid hooks run for
    it (``run_paid_hooks``). A caller that links rows to the invoices' lines afterwards (the billing
    run's charges: the hooks find a subscription through them) passes False and calls
    ``run_paid_hooks_of`` once they are linked."""
    if not drafts:
        return []
    tenant_id = getattr(tenant, "pk", tenant)
    today = timezone.localdate()
    now = timezone.now()
    made: list[tuple[Invoice, list[InvoiceLine], dict]] = []
    snapshot = audit.snapshot_of(Invoice)
    for draft in drafts:
        invoice = Invoice(tenant_id=tenant_id, customer=draft["customer"], prices_include_tax=conf.prices_include_tax,
                          currency=_check_currency(draft["currency"] or draft["customer"].currency))  # fmt: skip
        rows = _build_lines(invoice, draft["lines"])
        if not rows:
            raise Conflict("An invoice needs at least one line to be issued.")
        # The billing run names its lines ahead (its new charges point at them when inserted).
        for row, line_id in zip(rows, draft.get("line_ids", ()), strict=False):
            row.id = line_id
        invoice._lines = rows  # the billing run links its charges to them
        made.append((invoice, rows, snapshot(invoice)))
    numbers = numbering.next_numbers(tenant=tenant_id, series="invoice", fmt=conf.invoice_number_format, on=today,
                                     count=len(made))  # fmt: skip
    customer_ids = list({inv.customer_id for inv, _, _ in made if inv.total > 0})
    customers = lock_customers(customer_ids)
    balances: dict[tuple, Decimal] = {}
    if customer_ids:
        rows_ = CreditTransaction.all_tenants.filter(customer_id__in=customer_ids).values("customer_id", "currency")
        for row in rows_.annotate(s=Sum("amount")):
            balances[(row["customer_id"], row["currency"])] = row["s"] or ZERO
    credits: list[CreditTransaction] = []
    events = []
    seller = seller_snapshot(tenant)  # one tenant: one seller for the whole batch
    countries: dict = {}
    for (invoice, _rows, created), number, draft in zip(made, numbers, drafts, strict=True):
        customer = customers.get(invoice.customer_id, invoice.customer)
        invoice.number = number
        invoice.status = InvoiceStatus.OPEN
        invoice.issue_date = today
        invoice.due_date = draft.get("due_date") or today + timedelta(days=conf.payment_terms_days)
        invoice.issued_at = now
        invoice.billing_details = _billing_details(customer, countries)
        invoice.seller_details = seller
        if invoice.total > 0:
            key = (invoice.customer_id, invoice.currency)
            use = min(max(balances.get(key, ZERO), ZERO), invoice.total)
            if use > 0:
                balances[key] -= use
                invoice.credit_applied = use
                credits.append(CreditTransaction(
                    tenant_id=tenant_id, customer_id=invoice.customer_id, currency=invoice.currency, amount=-use,
                    kind=CreditTransaction.Kind.APPLIED, invoice=invoice, description=f"Applied to {number}",
                ))  # fmt: skip
        _refresh_due(invoice)
        mark_paid_if_settled(invoice)
        issued = snapshot(invoice)
        # ``audit.build``'s events as field values (the snapshots are JSON-ready already: ``plain_values``).
        events.append(audit.plain_values(action="invoice.create", obj=invoice, tenant=tenant_id, after=created))
        events.append(audit.plain_values(action="invoice.issue", obj=invoice, tenant=tenant_id, before=created,
                                         after=issued))  # fmt: skip
        for action, after in draft.get("audit", ()):
            events.append(audit.plain_values(action=action, obj=invoice, tenant=tenant_id, after=audit.plain(after)))
    # COPY on PostgreSQL (apps/billing/bulk.py): the batch's rows are new, numbered from the block.
    bulk.insert_all(Invoice, [inv for inv, _, _ in made])
    bulk.insert_all(InvoiceLine, [row for _, rows, _ in made for row in rows])
    if credits:
        CreditTransaction.all_tenants.bulk_create(credits)
    audit.insert_plain(events)  # the events ``audit.record_many`` would write, in this transaction
    notify_invoices([inv for inv, _, _ in made], "issued")
    issued_invoices = [inv for inv, _, _ in made]
    if run_paid_hooks:
        run_paid_hooks_of(issued_invoices)
    invoices_issued([inv for inv in issued_invoices if inv.status == InvoiceStatus.OPEN])
    return issued_invoices


def run_paid_hooks_of(issued: list[Invoice | None]) -> None:
    """The invoice-paid hooks of those ``create_issued_many`` issued paid (credit covered them)."""
    for invoice in issued:
        if invoice is not None and invoice.status == InvoiceStatus.PAID:
            invoice_paid(invoice)


@transaction.atomic
def invoice_void(*, invoice: Invoice) -> Invoice:
    invoice = lock_invoice(invoice)
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
        raise Conflict(f"A {invoice.status} invoice cannot be voided.")
    if invoice.amount_paid > 0:
        raise Conflict("This invoice has payments: refund them or issue a credit note instead of voiding.")
    with audit.change(invoice, "invoice.void"):
        if invoice.credit_applied > 0:
            # The customer's credit used by this invoice goes back to their balance.
            CreditTransaction.objects.create(
                tenant_id=invoice.tenant_id, customer_id=invoice.customer_id, currency=invoice.currency,
                amount=invoice.credit_applied, kind=CreditTransaction.Kind.ADJUSTMENT, invoice=invoice,
                description=f"Returned from voided {invoice.number}",
            )  # fmt: skip
            invoice.credit_applied = ZERO
        invoice.status = InvoiceStatus.VOID
        invoice.voided_at = timezone.now()
        invoice.amount_due = ZERO
        invoice.save()
    invoice_voided(invoice)
    return invoice


@transaction.atomic
def invoice_mark_uncollectible(*, invoice: Invoice) -> Invoice:
    invoice = lock_invoice(invoice)
    if invoice.status != InvoiceStatus.OPEN:
        raise Conflict(f"A {invoice.status} invoice cannot be marked uncollectible.")
    with audit.change(invoice, "invoice.uncollectible"):
        invoice.status = InvoiceStatus.UNCOLLECTIBLE
        invoice.marked_uncollectible_at = timezone.now()
        invoice.save()
    return invoice


@transaction.atomic
def invoice_send(*, invoice: Invoice, actor=None) -> Invoice:
    """E-mail an issued invoice (with its PDF) to the customer's billing address again, on request.

    Sent after the commit like every invoice e-mail; audited as ``invoice.send`` with the address."""
    invoice = lock_invoice(invoice)
    if invoice.status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID):
        raise Conflict(f"A {invoice.status} invoice is not sent; issue it first." if invoice.status == "draft"
                       else "A void invoice is not sent.")  # fmt: skip
    to = invoice.customer.invoice_email
    if not to:
        raise Conflict("This customer has no e-mail address to send the invoice to.")
    audit.record(action="invoice.send", obj=invoice, changes={"to": to}, **audit.by(actor))
    notify_invoice(invoice, "paid" if invoice.status == InvoiceStatus.PAID else "issued")
    return invoice
