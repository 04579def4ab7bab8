"""``manage.py billing_run``: invoice every subscription period due, then run dunning, and say what was done.

    manage.py billing_run                      # today: a progress bar, what was invoiced and dunned, totals
    manage.py billing_run --dry-run            # the same report of what a run would do; nothing is saved
    manage.py billing_run --date 2026-03-25    # as of a past day (a late run catches up)
    manage.py billing_run --date 2026-04-30 --dry-run   # a future day: only as a dry run
    manage.py billing_run --json               # one JSON object (scripts, cron mail)

A dry run is the real run inside one transaction that is rolled back at the end: what it shows is
exactly what a run would write, and it leaves no row, audit event, job or e-mail behind (jobs and
e-mails go out only when a transaction commits). While it runs it holds the locks the run takes (the
subscriptions it looks at, each tenant's invoice number sequence): a real run meanwhile skips those
subscriptions (it bills them the next time), an invoice issued by hand meanwhile waits for it.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Prefetch
from django.utils import timezone
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from apps.billing.models import Invoice, InvoiceLine, Subscription
from apps.billing.services.billing_run import RunResult, billing_run
from apps.billing.services.dunning import dunning_run
from apps.common.display import money
from apps.tenancy.scoping import all_tenants

STEP_NAMES = {
    "before": "reminder: due soon",
    "past_due": "past due",
    "after": "reminder: overdue",
    "suspend": "suspended",
    "terminate": "terminated",
}
# What each kind of step does to the invoice's subscriptions, for the summary.
STEP_EFFECTS = {"past_due": "marked past due", "suspend": "suspended", "terminate": "terminated"}


class _DryRun(Exception):
    """Raised at the end of a dry run to roll its transaction back."""


@dataclass
class Report:
    """What a run did (or would do), gathered while it runs and read before a dry run rolls back."""

    on: date
    dry_run: bool
    limit: int
    result: RunResult = field(default_factory=RunResult)
    totals: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    counts: Counter = field(default_factory=Counter)  # invoices per currency
    invoice_ids: list = field(default_factory=list)  # the first ``limit`` invoices, listed in full
    cancelled_ids: list = field(default_factory=list)
    dunning: dict[str, int] | None = None  # steps taken per kind; None: dunning did not run
    steps: list[tuple[Any, str, list]] = field(default_factory=list)  # (invoice id, step, subscription ids)
    step_subscriptions: Counter = field(default_factory=Counter)  # subscriptions changed per kind of step
    dunned: list[dict] = field(default_factory=list)
    invoiced: list[dict] = field(default_factory=list)
    cancelled: list[dict] = field(default_factory=list)

    def listed(self, rows: list) -> bool:
        return not self.limit or len(rows) < self.limit

    # --- what the services report as they go --------------------------------------------------

    def on_invoices(self, invoices: list[Invoice]) -> None:
        for invoice in invoices:
            self.totals[invoice.currency] += invoice.total
            self.counts[invoice.currency] += 1
            if self.listed(self.invoice_ids):
                self.invoice_ids.append(invoice.pk)

    def on_cancelled(self, sub: Subscription) -> None:
        if self.listed(self.cancelled_ids):
            self.cancelled_ids.append(sub.pk)

    def on_step(self, invoice: Invoice, step: str, subs: list[Subscription]) -> None:
        kind = step.split(":")[0]
        self.step_subscriptions[kind] += len(subs)
        if self.listed(self.steps):
            self.steps.append((invoice.pk, step, [sub.pk for sub in subs]))

    # --- the details shown, read in a few queries at the end -------------------------------------

    def load(self) -> None:
        with all_tenants():
            lines = InvoiceLine.all_tenants.select_related("subscription_charge__subscription__product")
            invoices = (
                Invoice.all_tenants.filter(pk__in=self.invoice_ids)
                .select_related("tenant", "customer")
                .prefetch_related(Prefetch("lines", queryset=lines))
            )
            by_pk = {invoice.pk: invoice for invoice in invoices}
            for pk in self.invoice_ids:
                invoice = by_pk[pk]
                for line in invoice.lines.all():
                    charge = getattr(line, "subscription_charge", None)
                    self.invoiced.append(
                        {
                            "tenant": invoice.tenant.name,
                            "customer": invoice.customer.name,
                            "invoice": invoice.number or "",
                            "currency": invoice.currency,
                            "subscription": subscription_name(charge.subscription) if charge else "",
                            "description": line.description,
                            "period": period(line.period_start, line.period_end),
                            "amount": line.total,
                            "invoice_total": invoice.total,
                        }
                    )
            subs = Subscription.all_tenants.select_related("tenant", "customer", "product")
            by_pk = {sub.pk: sub for sub in subs.filter(pk__in=self.cancelled_ids)}
            self.cancelled = [
                {"tenant": s.tenant.name, "customer": s.customer.name, "subscription": subscription_name(s)}
                for s in (by_pk[pk] for pk in self.cancelled_ids)
            ]
            step_invoices = {
                i.pk: i
                for i in Invoice.all_tenants.filter(pk__in=[pk for pk, _s, _subs in self.steps]).select_related(
                    "tenant", "customer"
                )
            }
            step_subs = {s.pk: s for s in subs.filter(pk__in=[pk for _i, _s, pks in self.steps for pk in pks])}
            for pk, step, sub_pks in self.steps:
                invoice = step_invoices[pk]
                self.dunned.append(
                    {
                        "tenant": invoice.tenant.name,
                        "customer": invoice.customer.name,
                        "invoice": invoice.number or "",
                        "due": invoice.due_date,
                        "amount_due": invoice.amount_due,
                        "currency": invoice.currency,
                        "step": step_name(step),
                        "subscriptions": [subscription_name(step_subs[p]) for p in sub_pks],
                    }
                )


def subscription_name(sub: Subscription) -> str:
    quantity = f" x{sub.quantity}" if sub.quantity > 1 else ""
    return f"{sub.product.name}{quantity} ({sub.cycle}) {str(sub.pk)[:8]}"


def period(start: date | None, end: date | None) -> str:
    if start is None:
        return "—"
    return start.isoformat() if end in (None, start) else f"{start.isoformat()} → {end.isoformat()}"


def step_name(step: str) -> str:
    kind, _, days = step.partition(":")
    name = STEP_NAMES.get(kind, step)
    if kind == "before":
        return f"{name} (in {days} day{'s' if days != '1' else ''})"
    if kind == "after":
        return f"{name} ({days} day{'s' if days != '1' else ''} late)"
    return name


class Command(BaseCommand):
    help = (
        "Invoice every subscription period due (safe to run again or concurrently), then run dunning; "
        "--dry-run shows what a run would do and changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--date", help="Run as of this day (YYYY-MM-DD); default today. A future day needs --dry-run."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show what would be invoiced, dunned and suspended; save nothing, send no e-mail, store no job.",
        )
        parser.add_argument("--no-dunning", action="store_true", help="Invoice only: no reminders or suspensions.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object (the summary) and no tables.")
        parser.add_argument(
            "--limit",
            type=int,
            default=100,
            help="List at most this many rows per table "
            "(default 100; 0: all). Counts and totals always cover everything.",
        )

    def handle(self, *args, **options):
        on = parse_date(options["date"]) if options["date"] else timezone.localdate()
        dry_run, as_json = options["dry_run"], options["json"]
        if on > timezone.localdate() and not dry_run:
            raise CommandError(
                f"--date {on.isoformat()} is in the future: a run would bill its periods and take its dunning steps "
                "(reminders, suspensions) before their day. Preview it with --dry-run, or run it on that day."
            )
        if options["limit"] < 0:
            raise CommandError("--limit must be 0 (all) or more.")
        report = Report(on=on, dry_run=dry_run, limit=options["limit"])
        # No markup: names come from customers and operators, and "[...]" in one must print as it is.
        out = Console(
            file=options.get("stdout") or sys.stdout, highlight=False, markup=False, width=self.width(options, "stdout")
        )
        err = Console(
            file=options.get("stderr") or sys.stderr, highlight=False, markup=False, width=self.width(options, "stderr")
        )
        quiet = as_json or options["verbosity"] == 0
        if dry_run:
            try:
                with transaction.atomic():
                    self.run(report, dunning=not options["no_dunning"], console=None if quiet else err)
                    raise _DryRun
            except _DryRun:
                pass  # everything the run wrote is rolled back, and the jobs and e-mails it queued with it
        else:
            self.run(report, dunning=not options["no_dunning"], console=None if quiet else err)
        if as_json:
            self.stdout.write(json.dumps(summary(report), indent=2))
        else:
            self.show(report, out)

    @staticmethod
    def width(options: dict, name: str) -> int | None:
        stream = options.get(name) or getattr(sys, name)
        return None if getattr(stream, "isatty", lambda: False)() else 160

    def run(self, report: Report, *, dunning: bool, console: Console | None) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=console is None) as bar:
            billing = bar.add_task("Invoicing customers", total=None)

            def billed(done: int, total: int) -> None:
                bar.update(billing, completed=done, total=total)

            report.result = billing_run(
                on=report.on, progress=billed, invoiced=report.on_invoices, cancelled=report.on_cancelled
            )
            if report.result.invoices == report.result.skipped_locked == 0:
                bar.update(billing, completed=0, total=0)  # no customer had a period due: the bar ends
            if dunning:
                dunned = bar.add_task("Dunning open invoices", total=None)

                def step(done: int, total: int) -> None:
                    bar.update(dunned, completed=done, total=total)

                report.dunning = dunning_run(on=report.on, progress=step, on_step=report.on_step)
        report.load()

    def show(self, report: Report, out: Console) -> None:
        would = report.dry_run
        title = f"Billing run as of {report.on.isoformat()}"
        if would:
            out.print(
                Text.assemble(
                    ("DRY RUN", "bold"),
                    f" · {title}: what a run would do. Nothing was saved; no e-mail, job or audit event was made.",
                )
            )
        else:
            out.print(Text(title, style="bold"))
        if report.invoiced:
            table = Table(title="Would invoice" if would else "Invoiced", title_justify="left")
            for name in ("Tenant", "Customer", "Invoice", "Subscription", "Period", "Amount"):
                table.add_column(name, justify="right" if name == "Amount" else "left")
            for row in report.invoiced:
                table.add_row(
                    row["tenant"],
                    row["customer"],
                    row["invoice"] or "—",
                    row["subscription"] or row["description"],
                    row["period"],
                    money(row["amount"], row["currency"]),
                )
            out.print(table)
        if report.cancelled:
            table = Table(
                title="Would end (cancelled at period end)" if would else "Ended (cancelled at period end)",
                title_justify="left",
            )
            for name in ("Tenant", "Customer", "Subscription"):
                table.add_column(name)
            for row in report.cancelled:
                table.add_row(row["tenant"], row["customer"], row["subscription"])
            out.print(table)
        if report.dunned:
            table = Table(title="Would dun" if would else "Dunned", title_justify="left")
            for name in ("Tenant", "Customer", "Invoice", "Due", "Amount due", "Step", "Subscriptions"):
                table.add_column(name, justify="right" if name == "Amount due" else "left")
            for row in report.dunned:
                table.add_row(
                    row["tenant"],
                    row["customer"],
                    row["invoice"],
                    row["due"].isoformat(),
                    money(row["amount_due"], row["currency"]),
                    row["step"],
                    ", ".join(row["subscriptions"]) or "—",
                )
            out.print(table)
        for line in summary_lines(report):
            out.print(line)


def summary_lines(report: Report) -> list[str]:
    """The closing summary, one fact a line."""
    r = report.result
    verb = (lambda done, would: would) if report.dry_run else (lambda done, would: done)
    lines = []
    if r.invoices:
        totals = ", ".join(
            f"{money(total, cur)} ({count(report.counts[cur], 'invoice')})"
            for cur, total in sorted(report.totals.items())
        )
        lines.append(
            f"{verb('Invoiced', 'Would invoice')}: {count(r.invoices, 'invoice')} for "
            f"{count(r.subscriptions, 'subscription')} ({count(r.charges, 'charge')}); total {totals}."
        )
    else:
        lines.append(f"{verb('Invoiced', 'Would invoice')}: nothing (no period due).")
    if r.cancelled:
        lines.append(f"{verb('Ended', 'Would end')} at period end: {count(r.cancelled, 'subscription')}.")
    if r.skipped_locked:
        lines.append(
            f"Skipped: {count(r.skipped_locked, 'subscription')} locked by another run "
            "(billed by it, or by the next run)."
        )
    if report.dunning is None:
        lines.append("Dunning: not run (--no-dunning).")
    elif report.dunning:
        reminders = report.dunning.get("before", 0) + report.dunning.get("after", 0)
        parts = [f"{count(reminders, 'reminder')} e-mailed"] if reminders else []
        for kind, effect in STEP_EFFECTS.items():
            if report.dunning.get(kind):
                parts.append(f"{count(report.step_subscriptions[kind], 'subscription')} {effect}")
        lines.append(f"{verb('Dunning', 'Dunning would take')}: {', '.join(parts) or 'steps with no effect'}.")
    else:
        lines.append(f"{verb('Dunning', 'Dunning would take')}: no step due.")
    steps = sum((report.dunning or {}).values())
    if r.invoices > len(report.invoice_ids) or r.cancelled > len(report.cancelled_ids) or steps > len(report.steps):
        lines.append(f"(Tables list at most {count(report.limit, 'row')} each; --limit 0 lists all.)")
    return lines


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def summary(report: Report) -> dict:
    r = report.result
    return {
        "date": report.on.isoformat(),
        "dry_run": report.dry_run,
        "invoices": r.invoices,
        "charges": r.charges,
        "subscriptions": r.subscriptions,
        "skipped_locked": r.skipped_locked,
        "cancelled": r.cancelled,
        "totals": {cur: str(total) for cur, total in sorted(report.totals.items())},
        "dunning": report.dunning,
        "dunning_subscriptions": {kind: n for kind, n in report.step_subscriptions.items() if n},
    }


def parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--date must be YYYY-MM-DD: {exc}") from exc
