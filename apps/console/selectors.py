"""The dashboard's figures: a fixed set of aggregate queries, whatever the number of rows.

Every figure comes with the URL of the admin changelist that lists the rows behind it (the same
filter as the figure), and only for models the operator may view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.db.models import Count, Q, Sum
from django.urls import reverse
from django.utils import timezone

from apps.billing import selectors as billing
from apps.billing.models import Invoice, InvoiceStatus, Subscription
from apps.cloudpods.models import CloudPod, PodStatus
from apps.jobs.models import Job, JobStatus
from apps.nodes.models import Node
from apps.security.models import EventType, SecurityEvent
from apps.tenancy.models import Tenant


@dataclass
class Figure:
    label: str
    value: object
    url: str = ""
    tone: str = ""  # "bad" | "warn" | "" (CSS class)


@dataclass
class Section:
    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    chart: dict | None = None  # {"type": "doughnut"|"bar", "labels": [...], "values": [...], "urls": [...]}


def changelist(model, **params) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def _can_view(user, model) -> bool:
    return user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")


def _stamp(moment: datetime) -> str:
    """A datetime as an admin filter parameter: to the second, with its UTC offset."""
    return timezone.localtime(moment).replace(microsecond=0).isoformat(sep=" ")


def dashboard(*, user, now: datetime | None = None) -> list[Section]:
    now = now or timezone.now()
    since = now - timedelta(hours=24)
    sections: list[Section] = []
    builders = [
        (Tenant, _tenants),
        (Subscription, _revenue),
        (Invoice, _overdue),
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


def _revenue(**_) -> Section:
    mrr = billing.mrr_by_currency()
    statuses = ",".join(billing.MRR_STATUSES)
    figures = [
        Figure(f"MRR {cur}", amount, changelist(Subscription, status__in=statuses, currency__exact=cur))
        for cur, amount in mrr.items()
    ]
    return Section("mrr", "Monthly recurring revenue", figures or [Figure("MRR", "none", changelist(Subscription))])


def _overdue(*, now, **_) -> Section:
    today = timezone.localdate(now)
    overdue = billing.overdue_by_currency(today=today)
    figures = [
        Figure(
            f"overdue {cur} ({row['count']} invoices)",
            row["amount"],
            changelist(Invoice, status__exact=InvoiceStatus.OPEN, due_date__lt=today.isoformat(), currency__exact=cur),
            "bad",
        )
        for cur, row in overdue.items()
    ]
    empty = Figure("overdue", "none", changelist(Invoice, status__exact=InvoiceStatus.OPEN))
    return Section("overdue", "Overdue invoices", figures or [empty])


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
    }
    return Section("pods", "CloudPods", figures, chart)


def _nodes(**_) -> Section:
    row = Node.all_tenants.aggregate(
        total=Count("id"),
        offline=Count("id", filter=Q(status="offline")),
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
        Figure("offline", row["offline"], changelist(Node, status__exact="offline"), "bad" if row["offline"] else ""),
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
    }
    return Section("nodes", "Nodes and capacity", figures, chart)


def _pct(used, total) -> int:
    return int(100 * float(used or 0) / float(total)) if total else 0


def _jobs(*, since, **_) -> Section:
    # Open jobs whatever their age, finished ones of the last 24 hours: the (status, run_after)
    # index serves the first half, and the finished half is bounded by time.
    counts = dict(
        Job.all_tenants.filter(Q(status__in=[JobStatus.PENDING, JobStatus.RUNNING]) | Q(finished_at__gte=since))
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    stamp = _stamp(since)
    figures = []
    urls = []
    for status in JobStatus.values:
        params = {"status__exact": status}
        if status not in (JobStatus.PENDING, JobStatus.RUNNING):
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
    }
    return Section("security", "Security events, last 24 hours", figures, chart)
