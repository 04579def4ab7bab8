"""Aggregates for the ops views. Each runs a fixed number of queries, whatever the data size."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Min, Q, Sum
from django.utils import timezone

from apps.cloudpods.models import CloudPod, PodStatus
from apps.customers.models import Customer
from apps.jobs.models import Job, JobStatus
from apps.nodes.models import Node, NodeStatus


def _scoped(model, tenant):
    """``tenant`` None = the platform view of an operator (the caller holds ``all_tenants()``)."""
    qs = model.objects.all()
    return qs.filter(tenant=tenant) if tenant is not None else qs


def pods_summary(tenant) -> dict:
    rows = _scoped(CloudPod, tenant).values("status", "plan").annotate(n=Count("id")).order_by()
    by_status = dict.fromkeys(PodStatus.values, 0)
    by_plan: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] += row["n"]
        if row["status"] != PodStatus.DELETED:
            by_plan[row["plan"]] = by_plan.get(row["plan"], 0) + row["n"]
    return {"by_status": by_status, "by_plan": dict(sorted(by_plan.items())), "live": sum(by_plan.values())}


def nodes_capacity(tenant) -> dict:
    agg = _scoped(Node, tenant).aggregate(
        total=Count("id"),
        **{f"status_{s}": Count("id", filter=Q(status=s)) for s in NodeStatus.values},
        vcpu=Sum("vcpu"),
        vcpu_used=Sum("allocated_vcpu"),
        memory_mb=Sum("memory_mb"),
        memory_mb_used=Sum("allocated_memory_mb"),
        disk_gb=Sum("disk_gb"),
        disk_gb_used=Sum("allocated_disk_gb"),
        pods=Sum("max_pods"),
        pods_used=Sum("allocated_pods"),
    )
    capacity = {}
    for key in ("vcpu", "memory_mb", "disk_gb", "pods"):
        total = agg[key] or 0
        used = agg[f"{key}_used"] or 0
        if key == "vcpu":
            total, used = float(total), float(used)
        capacity[key] = {"total": total, "used": used, "free": total - used}
    return {
        "count": agg["total"],
        "by_status": {s: agg[f"status_{s}"] for s in NodeStatus.values},
        "capacity": capacity,
    }


def jobs_last_24h(tenant, now=None) -> dict:
    now = now or timezone.now()
    since = now - timedelta(hours=24)
    agg = _scoped(Job, tenant).aggregate(
        **{s: Count("id", filter=Q(created_at__gte=since, status=s)) for s in JobStatus.values},
        oldest_due=Min("run_after", filter=Q(status=JobStatus.PENDING, run_after__lte=now)),
    )
    by_status = {s: agg[s] for s in JobStatus.values}
    finished = by_status[JobStatus.SUCCEEDED] + by_status[JobStatus.FAILED]
    oldest = agg["oldest_due"]
    return {
        "window_hours": 24,
        "by_status": by_status,
        "total": sum(by_status.values()),
        "failure_rate": round(by_status[JobStatus.FAILED] / finished, 4) if finished else 0.0,
        # How long the oldest job that is due has waited for a worker (any age, not only 24 h).
        "queue_age_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
    }


def platform_overview(tenant) -> dict:
    return {
        "scope": "tenant" if tenant is not None else "platform",
        "tenant": str(tenant.pk) if tenant is not None else None,
        "generated_at": timezone.now().isoformat(),
        "pods": pods_summary(tenant),
        "nodes": nodes_capacity(tenant),
        "jobs": jobs_last_24h(tenant),
    }


def overview(tenant) -> dict:
    now = timezone.now()
    pods = _scoped(CloudPod, tenant).aggregate(
        live=Count("id", filter=~Q(status=PodStatus.DELETED)), running=Count("id", filter=Q(status=PodStatus.RUNNING))
    )
    jobs = _scoped(Job, tenant).aggregate(
        pending=Count("id", filter=Q(status=JobStatus.PENDING)),
        failed_24h=Count("id", filter=Q(status=JobStatus.FAILED, created_at__gte=now - timedelta(hours=24))),
    )
    return {
        "customers": _scoped(Customer, tenant).count(),
        "nodes": _scoped(Node, tenant).count(),
        "pods": pods["live"],
        "pods_running": pods["running"],
        "jobs_pending": jobs["pending"],
        "jobs_failed_24h": jobs["failed_24h"],
    }
