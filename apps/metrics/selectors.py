"""Reads of server metrics: a node's services and health, and series for charts."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Avg, BigIntegerField, ExpressionWrapper, F, FloatField, Max, Min, Sum
from django.db.models.functions import Cast
from django.utils import timezone

from agent.metrics import NODE_METRICS, is_metric
from apps.common.exceptions import InvalidInput
from apps.nodes.models import NodeStatus, with_role

from .models import HourRollup, MinuteRollup, Sample

HOSTING_ROLES = ("web", "db", "mail", "dns")
# What each role needs running, as groups of alternatives: a group is met when one of them is up.
ROLE_SERVICES: dict[str, list[tuple[str, ...]]] = {
    "web": [("nginx",)],
    "dns": [("pdns",)],
    "mail": [("postfix",), ("dovecot",)],
    "db": [("postgresql", "mariadb")],
    "pods": [("runc",)],
}
DEFAULT_METRICS = ("cpu.percent", "mem.percent", "disk.percent", "load.1", "net.rx_bytes_per_s", "net.tx_bytes_per_s")
MAX_METRICS = 20


has_role = with_role


# --- services and health ---------------------------------------------------------------------------


def report_of(node):
    """The node's last pushed metrics report, or None."""
    try:
        return node.metrics_report
    except type(node).metrics_report.RelatedObjectDoesNotExist:
        return None


def last_report(node) -> tuple[datetime | None, dict, dict]:
    """(when the node last answered or reported, the services of its freshest report, its latest values).
    Two sources: the panel's heartbeat (pull) and the node's own metrics report (push)."""
    report = report_of(node)
    heartbeat_at = node.last_heartbeat_at
    heartbeat_services = (node.reported or {}).get("services") or {}
    pushed_at = report.reported_at if report else None
    latest = report.latest if report else {}
    if pushed_at and (heartbeat_at is None or pushed_at >= heartbeat_at):
        return pushed_at, (report.services or heartbeat_services), latest
    return heartbeat_at, heartbeat_services, latest


def node_health(node, now: datetime | None = None) -> dict:
    """``health``: ``unknown`` (never heard of), ``down`` (offline, or silent past
    MPANEL_NODE_OFFLINE_AFTER), ``degraded`` (a service its roles need is not up), else ``healthy``."""
    now = now or timezone.now()
    at, reported, latest = last_report(node)
    services = []
    degraded = False
    for role in node.roles or []:
        for group in ROLE_SERVICES.get(role, []):
            states = {name: (reported.get(name) or {}).get("state", "unknown") for name in group}
            if "up" not in states.values():
                degraded = True
            for name in group:
                entry = reported.get(name) or {}
                services.append({"name": name, "role": role, "state": states[name],
                                 "detail": entry.get("detail", "")})  # fmt: skip
    age = (now - at).total_seconds() if at else None
    if at is None:
        health = "unknown"
    elif node.status == NodeStatus.OFFLINE or age > settings.MPANEL_NODE_OFFLINE_AFTER:
        health = "down"
    elif degraded:
        health = "degraded"
    else:
        health = "healthy"
    return {
        "health": health,
        "last_report_at": at,
        "report_age_seconds": round(age, 1) if age is not None else None,
        "services": services,
        "usage": {m: latest[m][1] for m in NODE_METRICS if m in latest},
    }


# --- series ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesQuery:
    metrics: tuple[str, ...]
    start: int
    end: int
    step: int | None  # None: raw samples, unbucketed
    source: str  # raw | 1m | 1h


MAX_TIME = 2**36  # about the year 4147: far enough, and well inside a bigint


def _parse_time(value: str, field: str) -> int:
    value = value.strip()
    try:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        seconds = int(number)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidInput("Use unix seconds or an ISO 8601 time.", field=field) from exc
        if timezone.is_naive(parsed):
            parsed = parsed.replace(tzinfo=UTC)
        seconds = int(parsed.timestamp())
    if not 0 <= seconds <= MAX_TIME:
        raise InvalidInput("The time is out of range.", field=field)
    return seconds


def _parse_step(value: str | None, span: int) -> tuple[int | None, str]:
    named = {"raw": (None, "raw"), "1m": (60, "1m"), "1h": (3600, "1h")}
    if value is None or value == "":
        # The finest rollup that keeps every series under the bound (1m up to ~3.5 days a metric).
        return (60, "1m") if span / 60 <= settings.MPANEL_METRICS_MAX_POINTS / len(DEFAULT_METRICS) else (3600, "1h")
    if value in named:
        return named[value]
    try:
        step = int(value)
    except ValueError as exc:
        raise InvalidInput("Use raw, 1m, 1h or a number of seconds.", field="step") from exc
    if step < 1 or step > 366 * 86400:
        raise InvalidInput("The step is 1 second to a year.", field="step")
    if step >= 3600:
        if step % 3600:
            raise InvalidInput("A step of an hour or more is a whole number of hours.", field="step")
        return step, "1h"
    if step >= 60:
        if step % 60:
            raise InvalidInput("A step of a minute or more is a whole number of minutes.", field="step")
        return step, "1m"
    return step, "raw"


def parse_query(params) -> SeriesQuery:
    metrics: list[str] = []
    for value in params.getlist("metric"):
        metrics += [m.strip() for m in value.split(",") if m.strip()]
    metrics = list(dict.fromkeys(metrics)) or list(DEFAULT_METRICS)
    if len(metrics) > MAX_METRICS:
        raise InvalidInput(f"At most {MAX_METRICS} metrics per query.", field="metric")
    bad = [m for m in metrics if not is_metric(m)]
    if bad:
        raise InvalidInput(f"Unknown metric(s): {', '.join(b[:60] for b in bad[:5])}.", field="metric")
    now = int(time.time())
    end = _parse_time(params["to"], "to") if params.get("to") else now
    start = _parse_time(params["from"], "from") if params.get("from") else end - 3600
    if start >= end:
        raise InvalidInput("from must be before to.", field="from")
    if end - start > 2 * 366 * 86400:
        raise InvalidInput("The range is at most two years.", field="from")
    step, source = _parse_step(params.get("step"), end - start)
    if step is not None:
        points = len(metrics) * ((end - start) // step + 1)  # both ends included
        if points > settings.MPANEL_METRICS_MAX_POINTS:
            raise InvalidInput(
                f"{points} points asked for, at most {settings.MPANEL_METRICS_MAX_POINTS}: use a larger step "
                "or a shorter range.",
                field="step",
            )
    return SeriesQuery(metrics=tuple(metrics), start=start, end=end, step=step, source=source)


def series(node, query: SeriesQuery) -> list[dict]:
    """One query whatever the number of metrics. Points are ``[ts, avg, min, max]`` (a raw sample:
    its value three times), buckets named by their start and ordered by time."""
    limit = settings.MPANEL_METRICS_MAX_POINTS
    by_metric: dict[str, list] = {m: [] for m in query.metrics}
    if query.source == "raw" and query.step is None:
        rows = list(
            Sample.objects.filter(node=node, metric__in=query.metrics, ts__gte=query.start, ts__lte=query.end)
            .order_by("metric", "ts")
            .values_list("metric", "ts", "value")[: limit + 1]
        )
        if len(rows) > limit:
            raise InvalidInput(f"More than {limit} raw samples in this range: use a step.", field="step")
        for metric, ts, value in rows:
            by_metric[metric].append([ts, value, value, value])
    else:
        model = {"raw": Sample, "1m": MinuteRollup, "1h": HourRollup}[query.source]
        bucket = ExpressionWrapper(F("ts") / query.step * query.step, output_field=BigIntegerField())
        qs = model.objects.filter(node=node, metric__in=query.metrics, ts__gte=query.start, ts__lte=query.end)
        if model is Sample:
            aggregates = {"avg": Avg("value"), "min": Min("value"), "max": Max("value")}
        else:
            # The mean over a longer bucket weighs each rollup by its number of samples.
            aggregates = {
                "avg": Cast(Sum(F("value_avg") * F("samples"), output_field=FloatField()), FloatField())
                / Cast(Sum("samples"), FloatField()),
                "min": Min("value_min"),
                "max": Max("value_max"),
            }
        rows = (
            qs.annotate(bucket=bucket)
            .values("metric", "bucket")
            .annotate(**aggregates)
            .order_by("metric", "bucket")
            .values_list("metric", "bucket", "avg", "min", "max")
        )
        for metric, ts, avg, low, high in rows:
            by_metric[metric].append([ts, avg, low, high])
    return [{"metric": m, "points": points} for m, points in by_metric.items()]
