"""The dashboard's figures: a fixed set of aggregate queries, whatever the number of rows.

Every figure comes with the URL of the admin changelist that lists the rows behind it (the same
filter as the figure), and only for models the operator may view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.db.models import Count, DecimalField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Coalesce, TruncMonth
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from apps.backups import selectors as backup_selectors
from apps.backups.models import BackupPolicy
from apps.billing import selectors as billing
from apps.billing.models import Invoice, InvoiceStatus, Payment, PaymentStatus, Subscription, SubscriptionStatus
from apps.billing.periods import CYCLE_MONTHS, add_months
from apps.cloudpods.models import CloudPod, PodStatus
from apps.common.display import badge, money, when
from apps.common.money import quantize
from apps.jobs.models import FINISHED, OPEN, OPEN_STATUSES, Job, JobStatus
from apps.nodes.models import Node, NodeStatus
from apps.security.models import EventType, SecurityEvent
from apps.ssl import selectors as ssl_selectors
from apps.ssl.models import Certificate
from apps.tenancy.models import Tenant

# How many rows a to-do list shows; the "All …" link opens the whole filtered list.
TODO_ROWS = 5


@dataclass
class Figure:
    label: str
    value: object  # what is shown: a count, or money already formatted (apps.common.display.money)
    url: str = ""
    tone: str = ""  # "bad" | "warn" | "good" | "" (CSS class)
    amount: Decimal | None = None  # the exact figure behind a formatted amount
    note: str = ""  # e.g. the change since last month


@dataclass
class Todo:
    """One row of a to-do list: what needs a look, why, and the page where it is done."""

    title: str
    url: str
    detail: str = ""
    status: SafeString | str = ""
    since: str = ""


@dataclass
class Section:
    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    # {"type": "doughnut"|"bar", "labels": [...], "values": [...], "urls": [...], "integer": bool}
    # or, for several series, "datasets": [{"label": ..., "values": [...]}] instead of "values".
    chart: dict | None = None
    todo: list[Todo] = field(default_factory=list)
    more_url: str = ""  # the whole list behind the to-do rows
    empty: str = ""  # what to say when there is nothing to show
    wide: bool = False  # a card that spans two columns on wide screens


def changelist(model, **params) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def change(model, pk) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[pk])


def _can_view(user, model) -> bool:
    return user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")


def _stamp(moment: datetime) -> str:
    """A datetime as an admin filter parameter: to the second, with its UTC offset."""
    return timezone.localtime(moment).replace(microsecond=0).isoformat(sep=" ")


def dashboard(*, user, now: datetime | None = None) -> list[Section]:
    now = now or timezone.now()
    since = now - timedelta(hours=24)
    sections: list[Section] = []
    # Money first (what the business earns and is owed), then what needs an operator today,
    # then the state of the platform.
    builders = [
        (Payment, _revenue_chart),
        (Subscription, _revenue),
        (Invoice, _overdue),
        (Job, _failed_jobs),
        (Payment, _payments_to_review),
        (Node, _offline_nodes),
        (Certificate, _expiring_certificates),
        (BackupPolicy, _backup_failures),
        (Tenant, _tenants),
        (CloudPod, _pods),
        (Node, _nodes),
        (Job, _jobs),
        (SecurityEvent, _security),
    ]
    for model, build in builders:
        if _can_view(user, model):
            sections.append(build(now=now, since=since))
    return sections


def _tenants(**_) -> Section:
    row = Tenant.objects.aggregate(total=Count("id"), suspended=Count("id", filter=Q(status=Tenant.Status.SUSPENDED)))
    return Section(
        "tenants",
        "Tenants",
        [
            Figure("tenants", row["total"], changelist(Tenant)),
            Figure(
                "suspended",
                row["suspended"],
                changelist(Tenant, status__exact=Tenant.Status.SUSPENDED),
                "warn" if row["suspended"] else "",
            ),
        ],
    )


def month_starts(today: date, months: int = 12) -> list[date]:
    """The first days of the last ``months`` months, oldest first, this month last."""
    this_month = today.replace(day=1)
    return [add_months(this_month, -back) for back in range(months - 1, -1, -1)]


def _revenue_chart(*, now, **_) -> Section:
    """Money received per month and currency over the last 12 months, net of refunds."""
    months = month_starts(timezone.localdate(now))
    tz = timezone.get_current_timezone()
    start = timezone.make_aware(datetime.combine(months[0], datetime.min.time()), tz)
    net = ExpressionWrapper(
        F("amount") - F("refunded_amount"), output_field=DecimalField(max_digits=24, decimal_places=4)
    )
    rows = (
        Payment.all_tenants.filter(
            received_at__gte=start,
            status__in=[PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED],
        )
        .annotate(month=TruncMonth("received_at", tzinfo=tz))
        .values("month", "currency")
        .annotate(total=Sum(net))
        .order_by()
    )
    by_currency: dict[str, dict[date, Decimal]] = {}
    for row in rows:
        month = row["month"].date() if isinstance(row["month"], datetime) else row["month"]
        by_currency.setdefault(row["currency"], {})[month] = row["total"] or Decimal(0)
    currencies = sorted(by_currency, key=lambda cur: -sum(by_currency[cur].values()))
    this_month = months[-1]
    figures = [
        Figure(
            f"received in {this_month:%B} ({cur})",
            money(by_currency[cur].get(this_month, 0), cur),
            changelist(Payment, received_at__year=this_month.year, received_at__month=this_month.month,
                       currency__exact=cur),
            amount=quantize(by_currency[cur].get(this_month, Decimal(0)), cur),
        )
        for cur in currencies
    ]  # fmt: skip
    chart = {
        "type": "bar",
        "labels": [f"{m:%b %Y}" for m in months],
        "datasets": [
            {"label": cur, "values": [float(by_currency[cur].get(m, 0)) for m in months]} for cur in currencies
        ],
        "urls": [changelist(Payment, received_at__year=m.year, received_at__month=m.month) for m in months],
        "money": True,
    }
    return Section(
        "revenue",
        "Revenue, last 12 months",
        figures,
        chart if currencies else None,
        empty="" if currencies else "No payments received in the last 12 months.",
        wide=True,
    )


def _mrr_a_month_ago(moment: datetime) -> dict[str, Decimal]:
    """MRR as it stood at ``moment``, from the subscriptions' dates: started by then (activated,
    or made when never activated), not cancelled by then, and not suspended since before then.
    Prices are today's snapshots (a price change is not dated), so the change is one of
    subscriptions started, cancelled and suspended."""
    amount = ExpressionWrapper(
        F("unit_price") * F("quantity"), output_field=DecimalField(max_digits=24, decimal_places=4)
    )
    rows = (
        Subscription.all_tenants.annotate(started=Coalesce("activated_at", "created_at"))
        .filter(started__lte=moment)
        .exclude(status=SubscriptionStatus.PENDING)
        .exclude(cancelled_at__lte=moment)
        .exclude(status=SubscriptionStatus.SUSPENDED, suspended_at__lte=moment)
        .values("currency", "cycle")
        .annotate(total=Sum(amount))
        .order_by()
    )
    totals: dict[str, Decimal] = {}
    for row in rows:
        months = CYCLE_MONTHS.get(row["cycle"])
        if months and row["total"] is not None:
            totals[row["currency"]] = totals.get(row["currency"], Decimal(0)) + row["total"] / months
    return {cur: quantize(value, cur) for cur, value in totals.items()}


def _change_note(now_amount: Decimal, then: Decimal | None, currency: str) -> tuple[str, str]:
    """ "+€10.00 (+25%) vs last month" and its tone."""
    then = then or Decimal(0)
    delta = now_amount - then
    if not delta:
        return "no change vs last month", ""
    sign = "+" if delta > 0 else "-"
    pct = f" ({sign}{abs(delta) / then * 100:.0f}%)" if then else ""
    return f"{sign}{money(abs(delta), currency)}{pct} vs last month", "good" if delta > 0 else "warn"


def _revenue(*, now, **_) -> Section:
    mrr = billing.mrr_by_currency()
    before = _mrr_a_month_ago(now - timedelta(days=30))
    statuses = ",".join(billing.MRR_STATUSES)
    figures = []
    for cur in sorted(set(mrr) | set(before)):
        amount = mrr.get(cur, Decimal(0))
        note, tone = _change_note(amount, before.get(cur), cur)
        figures.append(
            Figure(f"MRR {cur}", money(amount, cur), changelist(Subscription, status__in=statuses, currency__exact=cur),
                   amount=amount, note=note, tone=tone)
        )  # fmt: skip
    return Section(
        "mrr",
        "Monthly recurring revenue",
        figures,
        more_url=changelist(Subscription, status__in=statuses),
        empty="" if figures else "No active subscriptions yet.",
    )


def _overdue(*, now, **_) -> Section:
    today = timezone.localdate(now)
    overdue = billing.overdue_by_currency(today=today)
    figures = [
        Figure(
            f"overdue {cur} ({row['count']} invoice{'s' if row['count'] != 1 else ''})",
            money(row["amount"], cur),
            changelist(Invoice, status__exact=InvoiceStatus.OPEN, due_date__lt=today.isoformat(), currency__exact=cur),
            "bad",
            amount=row["amount"],
        )
        for cur, row in overdue.items()
    ]
    oldest = (
        Invoice.all_tenants.filter(status=InvoiceStatus.OPEN, due_date__lt=today)
        .select_related("customer")
        .order_by("due_date", "number")[:TODO_ROWS]
    )
    todo = [
        Todo(
            title=f"{invoice} — {invoice.customer.name}",
            url=change(Invoice, invoice.pk),
            detail=money(invoice.amount_due, invoice.currency),
            status=badge("overdue", f"{(today - invoice.due_date).days} d late"),
            since=when(invoice.due_date),
        )
        for invoice in oldest
    ]
    return Section(
        "overdue",
        "Overdue invoices",
        figures,
        todo=todo,
        more_url=changelist(Invoice, status__exact=InvoiceStatus.OPEN, due_date__lt=today.isoformat()),
        empty="" if figures else "No overdue invoices.",
    )


def _failed_jobs(*, now, **_) -> Section:
    """Failed jobs of the last 7 days (a retried job is no longer failed), newest first."""
    since = now - timedelta(days=7)
    failed = (
        Job.all_tenants.filter(status=JobStatus.FAILED, finished_at__gte=since)
        .select_related("tenant")
        .order_by("-finished_at")[:TODO_ROWS]
    )
    todo = [
        Todo(
            title=job.type,
            url=change(Job, job.pk),
            detail=f"{job.tenant.name}: {job.last_error or 'no error recorded'}"[:120],
            status=badge(job.status, job.get_status_display()),
            since=when(job.finished_at),
        )
        for job in failed
    ]
    return Section(
        "failed-jobs",
        "Failed jobs, last 7 days",
        todo=todo,
        more_url=changelist(Job, status__exact=JobStatus.FAILED, finished_at__gte=_stamp(since)),
        empty="" if todo else "No failed jobs.",
    )


def _payments_to_review(*, now, **_) -> Section:
    """Payments that failed in the last 30 days: a card declined, a transfer returned."""
    since = now - timedelta(days=30)
    failed = (
        Payment.all_tenants.filter(status=PaymentStatus.FAILED, received_at__gte=since)
        .select_related("customer")
        .order_by("-received_at")[:TODO_ROWS]
    )
    todo = [
        Todo(
            title=f"{payment.customer.name}: {money(payment.amount, payment.currency)}",
            url=change(Payment, payment.pk),
            detail=payment.failure_reason or payment.get_method_display(),
            status=badge(payment.status, payment.get_status_display()),
            since=when(payment.received_at),
        )
        for payment in failed
    ]
    return Section(
        "payments-review",
        "Payments to review",
        todo=todo,
        more_url=changelist(Payment, status__exact=PaymentStatus.FAILED),
        empty="" if todo else "No failed payments in the last 30 days.",
    )


def _expiring_certificates(*, now, **_) -> Section:
    """Certificates that expire within the alert's 14 days (or have expired): renewal has not
    succeeded, and someone should look before visitors do."""
    rows = ssl_selectors.expiring_soon().select_related("tenant")[:TODO_ROWS]
    todo = [
        Todo(
            title=str(cert),
            url=change(Certificate, cert.pk),
            detail=f"{cert.tenant.name}: {cert.last_error or cert.get_source_display()}"[:120],
            status=badge("expired" if cert.not_after <= now else "expiring",
                         f"{max((cert.not_after - now).days, 0)} d left"),
            since=when(cert.not_after),
        )
        for cert in rows
    ]  # fmt: skip
    return Section(
        "certificates-expiring",
        "Certificates expiring within 14 days",
        todo=todo,
        more_url=changelist(Certificate),  # ordered by expiry
        empty="" if todo else "No certificate expires within 14 days.",
    )


def _backup_failures(**_) -> Section:
    """A failed restore drill, scheduled run or repository check: a backup that may not restore."""
    found = backup_selectors.failures(limit=TODO_ROWS)
    labels = {"drill": "restore drill failed", "run": "backup failed", "check": "check failed"}
    todo = [
        Todo(
            title=f"{f.obj}: {labels[f.what]}",
            url=change(type(f.obj), f.obj.pk),
            detail=f"{f.tenant}: {f.detail or 'no detail recorded'}"[:120],
            status=badge("failed", labels[f.what]),
            since=when(f.since) if f.since else "",
        )
        for f in found
    ]
    return Section(
        "backups-failing",
        "Backups that failed",
        todo=todo,
        more_url=changelist(BackupPolicy, last_drill_status__exact="failed"),
        empty="" if todo else "Every backup, drill and check passed.",
    )


def _offline_nodes(**_) -> Section:
    offline = Node.all_tenants.filter(status=NodeStatus.OFFLINE).select_related("tenant").order_by("hostname")
    todo = [
        Todo(
            title=node.hostname,
            url=change(Node, node.pk),
            detail=node.tenant.name,
            status=badge(node.status, node.get_status_display()),
            since=f"last seen {when(node.last_heartbeat_at)}" if node.last_heartbeat_at else "never seen",
        )
        for node in offline[:TODO_ROWS]
    ]
    return Section(
        "nodes-offline",
        "Nodes offline",
        todo=todo,
        more_url=changelist(Node, status__exact=NodeStatus.OFFLINE),
        empty="" if todo else "Every node is online.",
    )


def _pods(**_) -> Section:
    counts = dict(
        CloudPod.all_tenants.exclude(status=PodStatus.DELETED).values_list("status").annotate(n=Count("id")).order_by()
    )
    statuses = [s for s in PodStatus.values if s in counts]
    figures = [Figure("pods", sum(counts.values()), changelist(CloudPod))]
    figures += [
        Figure(
            PodStatus(s).label.lower(),
            counts[s],
            changelist(CloudPod, status__exact=s),
            "bad" if s == PodStatus.ERROR else "",
        )
        for s in statuses
    ]
    chart = {
        "type": "doughnut",
        "labels": [PodStatus(s).label for s in statuses],
        "values": [counts[s] for s in statuses],
        "urls": [changelist(CloudPod, status__exact=s) for s in statuses],
        "integer": True,
    }
    return Section("pods", "CloudPods", figures, chart if statuses else None)


def _nodes(**_) -> Section:
    row = Node.all_tenants.aggregate(
        total=Count("id"),
        offline=Count("id", filter=Q(status=NodeStatus.OFFLINE)),
        memory=Sum("memory_mb"),
        memory_used=Sum("allocated_memory_mb"),
        vcpu=Sum("vcpu"),
        vcpu_used=Sum("allocated_vcpu"),
        pods=Sum("max_pods"),
        pods_used=Sum("allocated_pods"),
    )

    def used(a, b) -> str:
        a, b = a or 0, b or 0
        return f"{a} / {b}" + (f" ({int(100 * float(a) / float(b))}%)" if b else "")

    url = changelist(Node)
    figures = [
        Figure("nodes", row["total"], url),
        Figure(
            "offline",
            row["offline"],
            changelist(Node, status__exact=NodeStatus.OFFLINE),
            "bad" if row["offline"] else "",
        ),
        Figure("memory MB allocated", used(row["memory_used"], row["memory"]), url),
        Figure("vCPU allocated", used(row["vcpu_used"], row["vcpu"]), url),
        Figure("pod slots used", used(row["pods_used"], row["pods"]), url),
    ]
    chart = {
        "type": "bar",
        "labels": ["memory", "vCPU", "pod slots"],
        "values": [
            _pct(row["memory_used"], row["memory"]),
            _pct(row["vcpu_used"], row["vcpu"]),
            _pct(row["pods_used"], row["pods"]),
        ],
        "urls": [url, url, url],
        "unit": "% allocated",
        "integer": True,
        "max": 100,
    }
    return Section("nodes", "Nodes and capacity", figures, chart)


def _pct(used, total) -> int:
    return int(100 * float(used or 0) / float(total)) if total else 0


def _jobs(*, since, **_) -> Section:
    # Open jobs whatever their age, finished ones of the last 24 hours: each half in the words of its
    # partial index (jobs_job_open_idx, jobs_job_finished_idx), so the planner can use both.
    counts = dict(
        Job.all_tenants.filter(OPEN | (FINISHED & Q(finished_at__gte=since)))
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    stamp = _stamp(since)
    figures = []
    urls = []
    for status in JobStatus.values:
        params = {"status__exact": status}
        if status not in OPEN_STATUSES:
            params["finished_at__gte"] = stamp
        url = changelist(Job, **params)
        urls.append(url)
        label = JobStatus(status).label.lower()
        if "finished_at__gte" in params:
            label += " (24h)"
        tone = "bad" if status == JobStatus.FAILED and counts.get(status) else ""
        figures.append(Figure(label, counts.get(status, 0), url, tone))
    chart = {
        "type": "bar",
        "labels": [JobStatus(s).label for s in JobStatus.values],
        "values": [counts.get(s, 0) for s in JobStatus.values],
        "urls": urls,
        "integer": True,
    }
    return Section("jobs", "Jobs", figures, chart)


def _security(*, since, **_) -> Section:
    counts = dict(
        SecurityEvent.objects.filter(created_at__gte=since).values_list("type").annotate(n=Count("id")).order_by()
    )
    stamp = _stamp(since)
    types = sorted(counts, key=lambda t: -counts[t])
    label = dict(EventType.choices)
    figures = [Figure("events (24h)", sum(counts.values()), changelist(SecurityEvent, created_at__gte=stamp))]
    figures += [
        Figure(label.get(t, t), counts[t], changelist(SecurityEvent, type__exact=t, created_at__gte=stamp))
        for t in types
    ]
    chart = {
        "type": "bar",
        "labels": [label.get(t, t) for t in types],
        "values": [counts[t] for t in types],
        "urls": [changelist(SecurityEvent, type__exact=t, created_at__gte=stamp) for t in types],
        "integer": True,
    }
    return Section("security", "Security events, last 24 hours", figures, chart if types else None)
