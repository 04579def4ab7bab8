"""Writes of server metrics: authenticate and ingest a node's batch, roll up, purge, report the local node.

Samples are machine data, not changes a person makes: ingest, rollups and purges are not audit
events (an audit row per batch would outgrow the samples). What is audited is what changes the
node itself (its secret, its settings) in apps.nodes.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from agent import shield as node_shield
from agent import signing
from agent.metrics import Collector, check_services, is_metric
from agent.shield import ShieldLog
from apps.cloudpods.models import CloudPod, PodStatus
from apps.common import parsers
from apps.common.exceptions import DomainError, InvalidInput
from apps.nodes import agent_secret
from apps.nodes.drivers import LocalDriver, NodeError, local_root
from apps.nodes.models import Node, NodeStatus, Transport
from apps.security import shield
from apps.tenancy.scoping import all_tenants
from apps.websites.models import Website

from .models import HourRollup, IngestNonce, MinuteRollup, NodeReport, RollupState, Sample

log = logging.getLogger(__name__)
SERVICE_STATES = {"up", "down", "absent", "unconfigured"}
NUMBER = (int, float)  # exact types: a JSON true/false is a bool, never a number here


class IngestRefused(DomainError):
    """The request is not a fresh one signed by the node's secret (bad credentials: 401)."""

    status_code = 401
    code = "not_authenticated"


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: int
    shield: dict | None = None  # what became of the batch's Shield events, when it had any

    def as_dict(self) -> dict:
        answer = {"received": self.received, "stored": self.stored, "duplicates": self.received - self.stored}
        if self.shield is not None:
            answer["shield"] = self.shield
        return answer


# --- authentication --------------------------------------------------------------------------------


def authenticate(*, headers, method: str, path: str, body: bytes, now: float | None = None) -> Node:
    """The node whose secret signed this request; raises ``IngestRefused`` otherwise.
    Same scheme as panel → agent (agent.signing); the nonce is checked by ``ingest`` (it is stored
    with the samples)."""
    try:
        node_id = uuid.UUID(headers.get("X-Mpanel-Node") or "")
    except ValueError as exc:
        raise IngestRefused("X-Mpanel-Node must name the node (its id)") from exc
    with all_tenants():
        node = Node.all_tenants.filter(pk=node_id).first()
    if node is None or not node.secret_salt or not node.secret_hash:
        raise IngestRefused("unknown node or node without a secret")
    secret = agent_secret.derive(node)
    # The derived secret must still be the one handed out (a rotation changes the salt and the hash).
    if not hmac.compare_digest(Node.hash_secret(secret), node.secret_hash):
        raise IngestRefused("the node's secret was rotated")
    # During a rotation's grace the previous secret is accepted too (agent_secret.valid_secrets).
    refused = signing.check(agent_secret.valid_secrets(node), headers, method, path, body, now=now)
    if refused:
        raise IngestRefused(refused)
    return node


# --- validation ------------------------------------------------------------------------------------


def parse_batch(body: bytes | dict) -> dict:
    """``{"samples": [[metric, ts, value], ...], "services"?: {name: {"state", "detail"?}},
    "shield"?: [event, ...]}`` (the requests Shield denied, ``agent.shield``) → checked data;
    a 400 with the first few errors per sample otherwise. Hand-written rather than a
    DRF serializer: it runs for every sample of every batch (a ListSerializer is ~50x slower)."""
    if isinstance(body, bytes | bytearray):
        try:
            data = parsers.loads(body)  # bounded in size and nesting, like every request body
        except parsers.InvalidJSON as exc:
            raise InvalidInput(f"The body is not JSON: {exc.detail}", field="non_field_errors") from exc
    else:
        data = body
    if not isinstance(data, dict):
        raise InvalidInput("The body must be an object.", field="non_field_errors")
    samples = data.get("samples")
    max_batch = settings.MPANEL_METRICS_MAX_BATCH
    if not isinstance(samples, list) or not samples:
        raise InvalidInput("A non-empty list of [metric, ts, value] is required.", field="samples")
    if len(samples) > max_batch:
        raise InvalidInput(f"At most {max_batch} samples per request.", field="samples")
    now = time.time()
    oldest, newest = now - settings.MPANEL_METRICS_MAX_AGE, now + signing.TOLERANCE
    errors: dict[str, list[str]] = {}
    rows: list[tuple[str, int, float]] = []
    known: set[str] = set()  # a batch repeats a few dozen names: each is matched once
    for i, item in enumerate(samples):
        # The common case in a few type checks; anything else gets its reason from _sample_problem.
        if (
            type(item) is list
            and len(item) == 3
            and (item[0] in known or (is_metric(item[0]) and not known.add(item[0])))
            and type(item[1]) in NUMBER
            and oldest <= item[1] <= newest
            and type(item[2]) in NUMBER
            and -1e300 <= item[2] <= 1e300  # False for NaN; inf is out of range
        ):
            rows.append((item[0], int(item[1]), float(item[2])))
            continue
        errors[str(i)] = [_sample_problem(item, oldest, newest) or "Invalid sample."]
        if len(errors) >= 20:
            break
    if errors:
        raise ValidationError({"samples": [f"sample {i}: {problem}" for i, (problem,) in errors.items()]})
    services = data.get("services") or {}
    if not isinstance(services, dict) or len(services) > 20:
        raise InvalidInput("services must be an object of at most 20 services.", field="services")
    clean_services = {}
    for name, state in services.items():
        if not (isinstance(name, str) and 0 < len(name) <= 32 and name.replace("-", "").isalnum()):
            raise InvalidInput(f"Bad service name {name!r}.", field="services")
        if not isinstance(state, dict) or state.get("state") not in SERVICE_STATES:
            raise InvalidInput(f"{name}: state must be one of {sorted(SERVICE_STATES)}.", field="services")
        clean_services[name] = {"state": state["state"], "detail": str(state.get("detail") or "")[:200]}
    batch = {"samples": rows, "services": clean_services}
    if data.get("shield") is not None:
        batch["shield"] = shield.parse_node_events(data["shield"])
    return batch


def _sample_problem(item, oldest: float, newest: float) -> str | None:
    if not isinstance(item, list) or len(item) != 3:
        return "A sample is [metric, ts, value]."
    metric, ts, value = item
    if not is_metric(metric):
        return f"Unknown metric {str(metric)[:60]!r}."
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return "ts must be unix seconds."
    if not oldest <= ts <= newest:
        return f"ts is outside the accepted window ({int(oldest)}..{int(newest)})."
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "value must be a finite number."
    if abs(value) > 1e300:
        return "value is out of range."
    if isinstance(ts, float) and not math.isfinite(ts):
        return "ts must be unix seconds."
    return None


# --- ingest ----------------------------------------------------------------------------------------


@transaction.atomic
def ingest(*, node: Node, batch: dict, nonce: str | None = None) -> IngestResult:
    """Store a checked batch: the nonce (refused if seen: a replay), the samples in one bulk
    insert (a sample already stored is skipped: re-sending a batch stores it once) and the node's
    latest report. One transaction and a constant number of queries whatever the batch size."""
    now = time.time()
    if nonce is not None:
        try:
            with transaction.atomic():
                IngestNonce.objects.create(node=node, nonce=nonce, seen_at=int(now))
        except IntegrityError as exc:
            raise IngestRefused("replayed request") from exc
    received_at = int(now)
    samples = batch["samples"]
    stored = _insert(node.pk, samples, received_at)
    latest: dict[str, list] = {}
    for metric, ts, value in batch["samples"]:
        if metric not in latest or ts >= latest[metric][0]:
            latest[metric] = [ts, value]
    _report_upsert(node, latest=latest, services=batch.get("services") or {}, count=len(samples))
    denials = shield.record_node_events(node=node, events=batch["shield"]) if "shield" in batch else None
    return IngestResult(received=len(samples), stored=stored, shield=denials)


def _insert(node_id, samples: list[tuple[str, int, float]], received_at: int) -> int:
    """Bulk insert that skips rows already there; answers how many were new.

    On PostgreSQL, first ``COPY`` straight into the table (its fastest way in) inside a savepoint: a
    batch of new samples, the usual case, is stored by it alone. COPY cannot skip a row already there,
    so when the unique key refuses one (a resent batch, a sample twice in a batch) the savepoint is
    rolled back, nothing of the COPY remains, and the batch goes through the skipping insert: one
    ``INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`` from plain lists (no model
    instances: building 5 000 of them cost more than the insert). Elsewhere (the embedded SQLite) the
    ORM's bulk_create, which cannot tell how many were skipped, so rows are counted before and after."""
    if not samples:
        return 0
    if connection.vendor == "postgresql":
        table = Sample._meta.db_table
        try:
            # wrap_database_errors: psycopg's UniqueViolation arrives as Django's IntegrityError.
            with transaction.atomic(), connection.cursor() as cursor, connection.wrap_database_errors:
                columns = "(node_id, metric, ts, value, received_at)"
                with cursor.cursor.copy(f"COPY {table} {columns} FROM STDIN") as copy:
                    for metric, ts, value in samples:
                        copy.write_row((node_id, metric, ts, value, received_at))
            return len(samples)
        except IntegrityError:
            pass  # some of them are stored already: the savepoint took the COPY back
        sql = (
            f"INSERT INTO {table} (node_id, metric, ts, value, received_at) "  # noqa: S608 (our own table name)
            "SELECT %s, m, t, v, %s FROM unnest(%s::text[], %s::bigint[], %s::float8[]) AS u(m, t, v) "
            "ON CONFLICT (node_id, metric, ts) DO NOTHING"
        )
        metrics, stamps, values = (list(column) for column in zip(*samples, strict=True))
        with connection.cursor() as cursor:
            cursor.execute(sql, [node_id, received_at, metrics, stamps, values])
            return cursor.rowcount
    before = Sample.objects.filter(node_id=node_id).count()
    rows = [Sample(node_id=node_id, metric=m, ts=ts, value=v, received_at=received_at) for m, ts, v in samples]
    Sample.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    return Sample.objects.filter(node_id=node_id).count() - before


def _report_upsert(node: Node, *, latest: dict, services: dict, count: int) -> None:
    now = datetime.now(tz=UTC)
    report = NodeReport.objects.select_for_update().filter(node=node).first()
    if report is None:
        NodeReport.objects.bulk_create(
            [NodeReport(node=node, reported_at=now, services=services, latest=latest, samples_total=count)],
            update_conflicts=True,
            unique_fields=["node"],
            update_fields=["reported_at", "services", "latest", "samples_total"],
        )
        return
    merged = dict(report.latest)
    for metric, point in latest.items():
        if metric not in merged or point[0] >= merged[metric][0]:
            merged[metric] = point
    # Pods come and go: forget a pod's metrics not reported for a day.
    cutoff = time.time() - 86400
    merged = {m: p for m, p in merged.items() if not (m.startswith("pod.") and p[0] < cutoff)}
    report.reported_at = now
    report.latest = merged
    if services:
        report.services = services
    report.samples_total += count
    report.save(update_fields=["reported_at", "services", "latest", "samples_total"])


# --- rollups and retention -------------------------------------------------------------------------


def _rollup_sql(target, source_table: str, step: int, source_is_raw: bool) -> str:
    raw = Sample._meta.db_table
    if source_is_raw:
        aggregates = "AVG(s.value), MIN(s.value), MAX(s.value), COUNT(*)"
    else:
        aggregates = "SUM(s.value_avg * s.samples) / SUM(s.samples), MIN(s.value_min), MAX(s.value_max), SUM(s.samples)"
    # Every bucket that a sample received in (since, until] falls into is recomputed whole from the
    # level below, so a late or re-sent sample gives the same figures as one in time.
    return f"""
        INSERT INTO {target._meta.db_table} (node_id, metric, ts, value_avg, value_min, value_max, samples)
        SELECT s.node_id, s.metric, t.bucket, {aggregates}
        FROM (SELECT DISTINCT node_id, metric, (ts / {step}) * {step} AS bucket
              FROM {raw} WHERE received_at > %s AND received_at <= %s) t
        JOIN {source_table} s ON s.node_id = t.node_id AND s.metric = t.metric
             AND s.ts >= t.bucket AND s.ts < t.bucket + {step}
        WHERE 1 = 1
        GROUP BY s.node_id, s.metric, t.bucket
        ON CONFLICT (node_id, metric, ts) DO UPDATE SET value_avg = excluded.value_avg,
            value_min = excluded.value_min, value_max = excluded.value_max, samples = excluded.samples
    """  # noqa: S608 (our own table names and integer steps)


@transaction.atomic
def rollup(*, now: float | None = None) -> dict:
    """Recompute the 1-minute buckets touched by samples received since the last run, then the
    1-hour buckets from the 1-minute rows. ``MPANEL_METRICS_ROLLUP_MARGIN`` seconds are left for
    ingest transactions still open (their rows are older than their commit)."""
    until = int(now if now is not None else time.time()) - settings.MPANEL_METRICS_ROLLUP_MARGIN
    state, _ = RollupState.objects.select_for_update().get_or_create(name="rollup")
    since = state.watermark
    if until <= since:
        return {"minutes": 0, "hours": 0, "since": since, "until": since}
    with connection.cursor() as cursor:
        cursor.execute(_rollup_sql(MinuteRollup, Sample._meta.db_table, 60, True), [since, until])
        minutes = cursor.rowcount
        cursor.execute(_rollup_sql(HourRollup, MinuteRollup._meta.db_table, 3600, False), [since, until])
        hours = cursor.rowcount
    state.watermark = until
    state.save(update_fields=["watermark", "updated_at"])
    return {"minutes": minutes, "hours": hours, "since": since, "until": until}


def purge(*, now: float | None = None) -> dict:
    """Retention: raw samples after MPANEL_METRICS_RAW_HOURS, 1-minute rollups after
    MPANEL_METRICS_MINUTE_DAYS, 1-hour rollups after MPANEL_METRICS_HOUR_DAYS; used nonces once
    their requests are stale anyway. One DELETE per table."""
    now = int(now if now is not None else time.time())
    # Rolled up first, so that nothing is purged before it is counted in its bucket.
    rollup(now=now)
    return {
        "samples": Sample.objects.filter(ts__lt=now - settings.MPANEL_METRICS_RAW_HOURS * 3600).delete()[0],
        "minutes": MinuteRollup.objects.filter(ts__lt=now - settings.MPANEL_METRICS_MINUTE_DAYS * 86400).delete()[0],
        "hours": HourRollup.objects.filter(ts__lt=now - settings.MPANEL_METRICS_HOUR_DAYS * 86400).delete()[0],
        "nonces": IngestNonce.objects.filter(seen_at__lt=now - 2 * signing.TOLERANCE).delete()[0],
    }


# --- the local node --------------------------------------------------------------------------------

_collector: Collector | None = None


def local_collector() -> Collector:
    global _collector
    root = Path(settings.MPANEL_NODE_ROOT)
    if _collector is None or _collector.disk_path != root:
        _collector = Collector(disk_path=root, state_file=root / "metrics-state.json")
    return _collector


def report_local() -> dict:
    """The local node's reporter (beat, every MPANEL_METRICS_INTERVAL): this machine's figures from
    /proc, the usage of each local node's pods, and its services, ingested like an agent's batch.
    Every local node is this machine, so each gets the machine's figures and its own pods'."""
    with all_tenants():
        nodes = list(Node.all_tenants.filter(transport=Transport.LOCAL).exclude(status=NodeStatus.MAINTENANCE))
        pods: dict = {}
        for node_id, container_id in CloudPod.all_tenants.filter(
            node__in=nodes, status__in=[PodStatus.RUNNING, PodStatus.SUSPENDED, PodStatus.RESIZING]
        ).values_list("node_id", "container_id"):
            pods.setdefault(node_id, []).append(container_id)
    if not nodes:
        return {"nodes": 0, "samples": 0}
    driver = LocalDriver()
    stats = {}
    for container_id in (c for ids in pods.values() for c in ids):
        try:
            stats[container_id] = asdict(driver.pod_stats(container_id))
        except NodeError as exc:
            log.warning("pod %s: no usage read: %s", container_id, exc)
    samples = local_collector().collect(stats)
    services = check_services(settings.MPANEL_NODE_ROOT)
    node_metrics = [s for s in samples if not s[0].startswith("pod.")]
    # The machine's Shield log holds every local node's sites: each node reports its own sites' lines.
    shield_log = local_shield_log()
    denials, position = shield_log.read()
    with all_tenants():
        node_of_site = dict(
            Website.all_tenants.filter(node__in=nodes, site_id__in={e["site"] for e in denials}).values_list(
                "site_id", "node_id"
            )
        )
    total = shield_total = 0
    for node in nodes:
        mine = {f"pod.{c}." for c in pods.get(node.pk, [])}
        batch = node_metrics + [s for s in samples if s[0].startswith("pod.") and s[0][: s[0].rindex(".") + 1] in mine]
        shield_events = [e for e in denials if node_of_site.get(e["site"]) == node.pk]
        result = ingest(node=node, batch=parse_batch({"samples": batch, "services": services, "shield": shield_events}))
        total += result.stored
        shield_total += result.shield["stored"]
    shield_log.commit(position)
    return {"nodes": len(nodes), "samples": total, "shield_events": shield_total}


def local_shield_log() -> ShieldLog:
    root = local_root()
    return ShieldLog(
        node_shield.log_path(root / "web"),
        root / "shield-log-state.json",
        limit=settings.MPANEL_SHIELD_MAX_EVENTS,
        max_age=settings.MPANEL_METRICS_MAX_AGE - signing.TOLERANCE,  # older ones the ingest refuses
    )
