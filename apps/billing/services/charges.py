"""Charging subscriptions: what is due for a period, written once as charges and invoiced.

The primitive under the billing run, a new subscription's first invoice and an accepted order:
every billed piece is a ``SubscriptionCharge`` whose unique key (subscription, kind, period)
refuses a second copy, so a period is never billed twice, and ``billed_through`` moves forward in
the same transaction. The subscriptions are locked by the caller.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Min, Sum, Value, When
from django.utils import timezone

from apps.catalog.pricing import usage_charge
from apps.common.money import quantize
from apps.customers.models import Customer

from .. import bulk, periods
from ..models import BillingSettings, Invoice, Subscription, SubscriptionCharge, UsageRecord
from . import invoices


@dataclass
class Group:
    """What one invoice is made of: subscriptions of ONE customer and currency, plus one-time lines."""

    customer: Customer
    currency: str
    subs: list[Subscription]
    setup_fees: dict = field(default_factory=dict)
    extra_lines: list[dict] = field(default_factory=list)
    due_date: date | None = None  # None: the tenant's payment terms from the issue date


@dataclass
class Billed:
    invoices: list[Invoice | None]  # one per group, None when nothing was due
    charges: int = 0  # charges written (a duplicate of an earlier run's is not)


def _due_charges(
    sub: Subscription, on: date, lead: int, setup_fee: Decimal | None, pending: list[SubscriptionCharge],
    usage: dict | None,
) -> list[SubscriptionCharge]:  # fmt: skip
    out: list[SubscriptionCharge] = []
    amount = quantize(sub.unit_price * sub.quantity, sub.currency)
    name = f"{sub.product.name}" + (f" x{sub.quantity}" if sub.quantity > 1 else "")
    if setup_fee:
        out.append(SubscriptionCharge(kind=SubscriptionCharge.Kind.SETUP, period_start=sub.anchor_date,
                                      period_end=sub.anchor_date, amount=setup_fee,
                                      description=f"Setup: {name}"))  # fmt: skip
    start = sub.billed_through
    while start - timedelta(days=lead) <= on:
        if sub.cancel_at_period_end and start >= sub.current_period_end:
            break
        s, e = periods.period_containing(anchor=sub.anchor_date, cycle=sub.cycle, on=start)
        out.append(SubscriptionCharge(kind=SubscriptionCharge.Kind.RECURRING, period_start=s, period_end=e,
                                      amount=amount, description=f"{name} ({sub.cycle})"))  # fmt: skip
        start = e
    # Plan-change charges made since the last invoice.
    out.extend(pending)
    # Metered usage, in arrears: everything reported before today and not billed yet.
    if usage and usage["q"]:
        unit = (sub.product.metering or {}).get("unit", "units")
        out.append(SubscriptionCharge(kind=SubscriptionCharge.Kind.USAGE, period_start=usage["first"].date(),
                                      period_end=on,
                                      amount=usage_charge(sub.product, currency=sub.currency, quantity=usage["q"]),
                                      description=f"{sub.product.name}: {usage['q'].normalize()} {unit}"))  # fmt: skip
    return out


def _update_each(model, objs: list, fields: list[str]) -> None:
    """Write ``fields`` of each of ``objs`` (rows of ``model``) in one statement.

    ``bulk_update`` builds a ``CASE WHEN pk = … THEN …`` per row and field (a third of a billing
    batch's time went into building them); on PostgreSQL the values go as one array per column
    instead: ``UPDATE … FROM unnest(pks, values…) WHERE pk = …``, the same rows written."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        model.all_tenants.bulk_update(objs, fields, batch_size=1000)
        return
    meta = model._meta
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    quote = connection.ops.quote_name
    arrays = [[column.get_db_prep_save(getattr(obj, column.attname), connection) for obj in objs]
              for column in columns]  # fmt: skip
    names = [f"c{i}" for i in range(len(columns))]
    # Identifiers from the model's meta (quoted), every value a parameter.
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET "  # noqa: S608
        + ", ".join(f"{quote(c.column)} = v.{n}" for c, n in zip(columns[1:], names[1:], strict=True))
        + " FROM unnest("
        + ", ".join(f"%s::{c.db_type(connection)}[]" for c in columns)
        + f") AS v({', '.join(names)}) WHERE t.{quote(meta.pk.column)} = v.{names[0]}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [_array_literal(values) for values in arrays])


def _array_literal(values: list):
    """``values`` as PostgreSQL's text form of an array (``{…,…}``) when each is a key, a date or a time,
    whose text needs no quoting in it; else the list. psycopg binds a list client-side by escaping each
    element with a regular expression (most of ``_update_each``'s time); one string is quoted once, and
    the ``::type[]`` cast reads the same values."""
    out = []
    for value in values:
        if value is None:
            out.append("NULL")
        elif isinstance(value, uuid.UUID):
            out.append(str(value))
        elif isinstance(value, date):  # a datetime too: ISO 8601, "T" between date and time, no spaces
            out.append(value.isoformat())
        else:
            return values
    return "{" + ",".join(out) + "}"


def _insert_charges(new: list[SubscriptionCharge]) -> set:
    """Insert ``new`` charges, skipping any whose (subscription, kind, period) exists; answers the pks
    written.

    On PostgreSQL, first one ``COPY`` inside a savepoint: in a run nothing is charged twice, so it
    normally writes them all and nothing need be read back. When the unique key refuses one (a period
    another run billed: ``billed_through`` behind its charges), the savepoint takes the COPY back and the
    batch goes the generic way: INSERT … ON CONFLICT DO NOTHING (``ignore_conflicts``), and what was
    written is what reads back (bulk_create marks every object saved, inserted or not)."""
    if not new:
        return set()
    if bulk.copy_enabled():
        try:
            with transaction.atomic():
                bulk.insert_all(SubscriptionCharge, new)
            return {c.pk for c in new}
        except IntegrityError:
            pass
    SubscriptionCharge.all_tenants.bulk_create(new, ignore_conflicts=True, batch_size=1000)
    return set(
        SubscriptionCharge.all_tenants.filter(pk__in=[c.pk for c in new]).order_by().values_list("pk", flat=True)
    )


def bill_groups(groups: list[Group], *, tenant, on: date, conf: BillingSettings) -> Billed:
    """Invoice what is due for several groups of ONE tenant, in the caller's transaction, with the
    subscriptions locked by the caller. The number of queries does not depend on the number of groups.

    Every charge is inserted with ON CONFLICT DO NOTHING on its unique key (subscription, kind,
    period) and read back: a charge that already exists (billed by an earlier or concurrent run)
    is dropped from the invoice, so a period is never billed twice."""
    subs = [sub for g in groups for sub in g.subs]
    sub_ids = [sub.pk for sub in subs]
    pending: dict = defaultdict(list)
    if sub_ids:
        unbilled = SubscriptionCharge.all_tenants.filter(subscription_id__in=sub_ids, invoice_line__isnull=True)
        for charge in unbilled.order_by("subscription_id", "period_start", "created_at"):
            pending[charge.subscription_id].append(charge)
    metered = [sub.pk for sub in subs if (sub.product.metering or {}).get("unit_prices")]
    usage: dict = {}
    if metered:
        rows = (UsageRecord.all_tenants.filter(subscription_id__in=metered, charge__isnull=True,
                                               occurred_at__date__lt=on)
                .values("subscription_id").annotate(q=Sum("quantity"), first=Min("occurred_at")))  # fmt: skip
        usage = {row["subscription_id"]: row for row in rows}
    # What is due, per group and subscription, in invoice line order.
    due: list[list[tuple[Subscription, SubscriptionCharge]]] = []
    new: list[SubscriptionCharge] = []
    for group in groups:
        items = []
        for sub in group.subs:
            for charge in _due_charges(sub, on, conf.lead_days, group.setup_fees.get(sub.pk), pending[sub.pk],
                                       usage.get(sub.pk)):  # fmt: skip
                if charge._state.adding:
                    charge.tenant_id = sub.tenant_id
                    charge.subscription = sub
                    new.append(charge)
                items.append((sub, charge))
        due.append(items)
    # Each new charge names its invoice line ahead (the line is inserted later in this transaction:
    # the foreign key is checked at commit), so it is written linked and needs no UPDATE after.
    for charge in new:
        charge.invoice_line_id = uuid.uuid4()
    new_ids = {c.pk for c in new}
    written = _insert_charges(new)
    drafts: list[dict] = []
    kept: list[list[SubscriptionCharge]] = []
    moved: list[Subscription] = []
    usage_links: dict = {}
    now = timezone.now()
    for group, items in zip(groups, due, strict=True):
        pairs = [(sub, c) for sub, c in items if c.pk not in new_ids or c.pk in written]
        saved = [c for _, c in pairs]
        for charge in saved:
            if charge.kind == SubscriptionCharge.Kind.USAGE and charge.pk in written:
                usage_links[charge.subscription_id] = charge.pk
        for sub in group.subs:
            ends = [c.period_end for c in saved if c.subscription_id == sub.pk and c.kind == "recurring"]
            if ends:
                sub.billed_through = max(ends)
                sub.updated_at = now
                moved.append(sub)
        lines = [{
            "description": c.description, "quantity": 1, "unit_price": c.amount,
            "tax_rate": sub.tax_rate, "period_start": c.period_start,
            "period_end": c.period_end - timedelta(days=1) if c.period_end > c.period_start else c.period_end,
        } for sub, c in pairs] + list(group.extra_lines)  # fmt: skip
        kept.append(saved)
        if lines:
            # A pending charge (made before this run) is linked by an UPDATE below: its line is named now.
            line_ids = [c.invoice_line_id if c.pk in new_ids else uuid.uuid4() for c in saved]
            drafts.append({"customer": group.customer, "currency": group.currency or group.customer.currency,
                           "lines": lines, "line_ids": line_ids, "due_date": group.due_date,
                           "audit": [("billing.run.invoice", {
                               "subscriptions": [str(s.pk) for s in group.subs], "lines": len(lines)})]})  # fmt: skip
    if moved:
        _update_each(Subscription, moved, ["billed_through", "updated_at"])
    if usage_links:
        to_charge = Case(*[When(subscription_id=s, then=Value(c)) for s, c in usage_links.items()])
        UsageRecord.all_tenants.filter(
            subscription_id__in=list(usage_links), charge__isnull=True, occurred_at__date__lt=on
        ).update(charge_id=to_charge)
    # The paid hooks (a credit balance can pay an invoice at issue) run once the charges are linked
    # to the lines: they find the subscriptions to activate through them.
    made = iter(invoices.create_issued_many(tenant=tenant, conf=conf, drafts=drafts, run_paid_hooks=False))
    out: list[Invoice | None] = []
    linked: list[SubscriptionCharge] = []
    for saved, group in zip(kept, groups, strict=True):
        if not saved and not group.extra_lines:
            out.append(None)
            continue
        invoice = next(made)
        out.append(invoice)
        for charge, line in zip(saved, invoice._lines[: len(saved)], strict=True):
            charge.invoice_line = line
            if charge.pk not in new_ids:
                linked.append(charge)
    if linked:
        _update_each(SubscriptionCharge, linked, ["invoice_line"])
    invoices.run_paid_hooks_of(out)
    return Billed(invoices=out, charges=len(written))


def bill_subscriptions(
    subs: list[Subscription], *, on: date, setup_fees: dict | None = None, extra_lines: list[dict] | None = None,
    customer=None, currency: str | None = None, due_date: date | None = None,
) -> Invoice | None:  # fmt: skip
    """Invoice what is due for subscriptions of ONE customer and currency (locked by the caller),
    plus ``extra_lines`` (one-time items of an order) after theirs. ``due_date``, as
    ``invoice_create``'s, is when payment is expected (default: the tenant's payment terms).

    Returns the issued invoice, or None when nothing was due (or another run billed it)."""
    if not subs and not extra_lines:
        return None
    customer = customer or subs[0].customer
    currency = currency or subs[0].currency
    with transaction.atomic():
        conf = invoices.billing_settings(customer.tenant_id)
        group = Group(customer=customer, currency=currency, subs=list(subs), setup_fees=setup_fees or {},
                      extra_lines=list(extra_lines or []), due_date=due_date)  # fmt: skip
        return bill_groups([group], tenant=customer.tenant_id, on=on, conf=conf).invoices[0]
