"""Writes of server metrics: authenticate and ingest a node's batch, roll up, purge, report the local node.

Samples are machine data, not changes a person makes: ingest, rollups and purges are not audit
events (an audit row per batch would outgrow the samples). What is audited is what changes the
node itself (its secret, its settings) in apps.nodes.
"""

from __future__ import annotations

import gc
import hmac
import json
import logging
import math
import operator
import struct
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import chain, repeat
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from rest_framework.exceptions import ValidationError as DRFValidationError

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
NUMBER_TYPES = frozenset(NUMBER)


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


# --- one request ---------------------------------------------------------------------------------


def receive(*, headers, method: str, path: str, body: bytes) -> IngestResult:
    """A node's signed request, end to end: ``authenticate``, ``parse_batch``, ``ingest`` (with the
    request's nonce), with the cyclic garbage collector paused (``collector_paused``). Every
    object of the batch is dropped when this returns, before the collector runs again."""
    with collector_paused():
        node = authenticate(headers=headers, method=method, path=path, body=body)
        return ingest(node=node, batch=parse_batch(body), nonce=headers.get("X-Mpanel-Nonce"))


@contextmanager
def collector_paused() -> Iterator[None]:
    """``gc.disable()`` for the duration, restored in every case (never enabled here if it was not).

    A batch is thousands of freshly allocated lists and tuples (json.loads' samples, the checked
    rows) alive until the request ends. Each 700 of them set off a young collection that walks them,
    and once they are promoted, the oldest generation's collection walks every object of the process
    (~160,000 in a panel worker: tens of milliseconds) every few batches, although nothing in a batch
    is cyclic: all of it is freed by reference counting when the request's frames return. Paused, the
    collector's allocation count goes back down as those objects are freed, so it finds nothing to do
    afterwards either. Cycles made meanwhile (an exception's traceback) are collected by the next
    collection as usual. Process-wide, so threads of the same process are covered too; a thread
    that paused it first and restores it first only ends the pause early (a matter of speed, not of
    correctness)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


class _NotQuick(Exception):
    """The quick reading of a body cannot vouch for it: read it the generic way."""


def parse_batch(body: bytes | dict) -> dict:
    """``{"samples": [[metric, ts, value], ...], "services"?: {name: {"state", "detail"?}},
    "shield"?: [event, ...]}`` (the requests Shield denied, ``agent.shield``) → checked data;
    a 400 with the first few errors per sample otherwise. Hand-written rather than a
    DRF serializer: it runs for every sample of every batch (a ListSerializer is ~50x slower).

    A body is first read the quick way (``_quick_loads``: plain ``json.loads``, no bracket scan of
    the whole text and no hook per number) and checked; it is kept only when the check itself
    proves what ``apps.common.parsers.loads`` enforces (every sample a flat ``[metric, ts, value]``
    of finite numbers, the rest shallow and finite, the size within the limit). Anything else, a
    bad batch included, is read again by ``parsers.loads`` and checked again, so every answer (the
    data, each 400 and its words) is the generic reader's."""
    if isinstance(body, bytes | bytearray):
        data = _quick_loads(body)
        if data is not None:
            try:
                return _check_batch(data, quick=True)
            except (_NotQuick, InvalidInput, ValidationError, DRFValidationError):
                pass  # read again below: the answer (and its error) is the generic reader's
        try:
            data = parsers.loads(body)  # bounded in size and nesting, like every request body
        except parsers.InvalidJSON as exc:
            raise InvalidInput(f"The body is not JSON: {exc.detail}", field="non_field_errors") from exc
    else:
        data = body
    return _check_batch(data)


def _quick_loads(body: bytes | bytearray):
    """``json.loads`` of a UTF-8 body within the size limit, or None (the generic reader decides)."""
    if len(body) > parsers.max_body_bytes() or parsers.max_depth() < 3:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None


def _shallow_and_finite(value, room: int) -> bool:
    """No float that ``parsers.loads`` refuses (NaN, ±inf) and at most ``room`` more levels of
    arrays and objects. Recursion is bounded by ``room`` (the depth limit, 32 by default)."""
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind is list or kind is dict:
        if room < 1:
            return False
        return all(_shallow_and_finite(v, room - 1) for v in (value.values() if kind is dict else value))
    return True


def _check_batch(data, *, quick: bool = False) -> dict:
    if quick:
        # The top object is one level; everything but the samples (checked one by one below) must fit
        # under the depth limit and hold finite numbers only, as parsers.loads would have enforced.
        if type(data) is not dict:
            raise _NotQuick
        room = parsers.max_depth() - 1
        if not all(_shallow_and_finite(v, room) for k, v in data.items() if k != "samples"):
            raise _NotQuick
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
    rows = _rows_at_once(samples, oldest, newest)
    # A batch with a bad sample: one at a time, to name the first few problems.
    for i, item in enumerate(samples if rows is None else ()):
        # The common case in a few type checks; anything else gets its reason from _sample_problem.
        if (
            type(item) is list
            and len(item) == 3
            and is_metric(item[0])
            and type(item[1]) in NUMBER
            and oldest <= item[1] <= newest
            and type(item[2]) in NUMBER
            and -1e300 <= item[2] <= 1e300  # False for NaN; inf is out of range
        ):
            continue
        errors[str(i)] = [_sample_problem(item, oldest, newest) or "Invalid sample."]
        if len(errors) >= 20:
            break
    if errors:
        if quick:  # a plain json.loads lets through what parsers.loads refuses (NaN, 1e999, depth)
            raise _NotQuick
        raise ValidationError({"samples": [f"sample {i}: {problem}" for i, (problem,) in errors.items()]})
    if rows is None:  # every sample passed one by one (the column checks are stricter, never looser)
        rows = [(item[0], int(item[1]), float(item[2])) for item in samples]
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


def _rows_at_once(samples: list, oldest: float, newest: float) -> list[tuple[str, int, float]] | None:
    """``(metric, int ts, float value)`` of every sample when each is a good ``[metric, ts, value]``
    (a known metric, a number of seconds in the window, a finite value within ±1e300; exact types,
    so a JSON true/false is no number), checked a column at a time in C loops (``map``, ``zip``,
    ``min``, ``max``) rather than a sample at a time. None when any sample is not: the caller
    then goes through them one by one to name the problems."""
    try:
        if set(map(type, samples)) != {list} or set(map(len, samples)) != {3}:
            return None
        metrics, stamps, values = _columns(samples)
        if not all(map(is_metric, set(metrics))):  # a batch repeats a few dozen names: each once
            return None
        for column, low, high in ((stamps, oldest, newest), (values, -1e300, 1e300)):
            kinds = set(map(type, column))
            if not kinds <= NUMBER_TYPES:
                return None
            if float in kinds and not all(map(math.isfinite, column)):  # NaN compares false: no min/max
                return None
            if min(column) < low or max(column) > high:
                return None
    except (TypeError, ValueError, OverflowError):  # an unhashable name, an int too large for a float
        return None
    stamps, values = list(map(int, stamps)), list(map(float, values))
    rows = Rows(zip(metrics, stamps, values, strict=True))
    rows.columns = (metrics, stamps, values)
    return rows


class Rows(list):
    """The checked ``(metric, ts, value)`` rows of a batch (a list, equal to any list of the same
    rows), with their three ``columns`` when the column check made them: the COPY data and the
    latest figures read those instead of taking the rows apart again."""

    columns: tuple[list, list, list] | None = None


_FIRST, _SECOND, _THIRD = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)


def _columns(samples: list) -> tuple[list, list, list]:
    """The three columns of a batch of ``[metric, ts, value]`` (or tuples), in three C loops without
    the iterator object per row that ``zip(*samples)`` makes; the ones kept by ``Rows`` if any."""
    kept = getattr(samples, "columns", None)
    if kept is not None:
        return kept
    return list(map(_FIRST, samples)), list(map(_SECOND, samples)), list(map(_THIRD, samples))


def _sample_problem(item, oldest: float, newest: float) -> str | None:
    if not isinstance(item, list) or len(item) != 3:
        return "A sample is [metric, ts, value]."
    metric, ts, value = item
    if not is_metric(metric):
        return f"Unknown metric {str(metric)[:60]!r}."
    # An int is finite (math.isfinite of one past a float's range raised OverflowError: a 500).
    if isinstance(ts, bool) or not isinstance(ts, int | float) or (isinstance(ts, float) and not math.isfinite(ts)):
        return "ts must be unix seconds."
    if not oldest <= ts <= newest:
        return f"ts is outside the accepted window ({int(oldest)}..{int(newest)})."
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "value must be a finite number."
    if isinstance(value, float) and not math.isfinite(value):
        return "value must be a finite number."
    if abs(value) > 1e300:
        return "value is out of range."
    if isinstance(ts, float) and not math.isfinite(ts):
        return "ts must be unix seconds."
    return None


# --- ingest ----------------------------------------------------------------------------------------


class _CopyRefused(Exception):
    """COPY without a savepoint met a sample stored already: the transaction is lost, start again."""


def ingest(*, node: Node, batch: dict, nonce: str | None = None) -> IngestResult:
    """Store a checked batch: the nonce (refused if seen: a replay), the samples in one bulk
    insert (a sample already stored is skipped: re-sending a batch stores it once) and the node's
    latest report. One transaction and a constant number of queries whatever the batch size.

    When this is the outermost transaction on PostgreSQL (as served), the COPY runs without a
    savepoint (two round trips fewer): if the unique key refuses a sample, the whole transaction is
    rolled back (the nonce with it: nothing of the attempt remains) and the batch is stored again
    in a new one through the skipping insert. Inside someone else's transaction, the savepoint
    takes the COPY alone back instead (``_insert``)."""
    # Outermost: no atomic block open and autocommit on (else a transaction someone else manages).
    if connection.vendor == "postgresql" and not connection.in_atomic_block and connection.get_autocommit():
        try:
            with transaction.atomic():
                return _ingest(node=node, batch=batch, nonce=nonce, copy="bare")
        except _CopyRefused:
            pass  # rolled back whole: a resent batch, or a sample twice in it
        with transaction.atomic():
            return _ingest(node=node, batch=batch, nonce=nonce, copy="skip")
    with transaction.atomic():
        return _ingest(node=node, batch=batch, nonce=nonce, copy="savepoint")


def _ingest(*, node: Node, batch: dict, nonce: str | None, copy: str) -> IngestResult:
    now = time.time()
    if nonce is not None:
        # ON CONFLICT DO NOTHING rather than an INSERT in a savepoint that a replay's unique
        # violation rolls back: one statement, and no row inserted is the same "seen before".
        table = IngestNonce._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (node_id, nonce, seen_at) VALUES (%s, %s, %s) "  # noqa: S608 (our table)
                "ON CONFLICT (node_id, nonce) DO NOTHING",
                [node.pk, nonce, int(now)],
            )
            if cursor.rowcount != 1:
                raise IngestRefused("replayed request")
    received_at = int(now)
    samples = batch["samples"]
    stored = _insert(node.pk, samples, received_at, copy=copy)
    _report_upsert(node, latest=_latest(samples), services=batch.get("services") or {}, count=len(samples))
    denials = shield.record_node_events(node=node, events=batch["shield"]) if "shield" in batch else None
    return IngestResult(received=len(samples), stored=stored, shield=denials)


def _latest(samples: list[tuple[str, int, float]]) -> dict[str, list]:
    """Each metric's ``[ts, value]`` of the highest ts (the later sample on a tie)."""
    if not samples:
        return {}
    metrics, stamps, values = _columns(samples)
    if all(map(operator.le, stamps, stamps[1:])):
        # In time order (an agent's batch): each metric's last sample is its latest; dict() keeps the
        # last value of a key at the place of its first, as the loop below does. Lists as the loop.
        return {m: [ts, v] for m, (ts, v) in dict(zip(metrics, zip(stamps, values, strict=True), strict=True)).items()}
    latest: dict[str, list] = {}
    for metric, ts, value in samples:
        if metric not in latest or ts >= latest[metric][0]:
            latest[metric] = [ts, value]
    return latest


def _insert(node_id, samples: list[tuple[str, int, float]], received_at: int, *, copy: str = "savepoint") -> int:
    """Bulk insert that skips rows already there; answers how many were new.

    On PostgreSQL, first ``COPY`` straight into the table (its fastest way in) inside a savepoint: a
    batch of new samples, the usual case, is stored by it alone. COPY cannot skip a row already there,
    so when the unique key refuses one (a resent batch, a sample twice in a batch) the savepoint is
    rolled back, nothing of the COPY remains, and the batch goes through the skipping insert: one
    ``INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`` from plain lists (no model
    instances: building 5 000 of them cost more than the insert). Elsewhere (the embedded SQLite) the
    ORM's bulk_create, which cannot tell how many were skipped, so rows are counted before and after.

    ``copy``: ``"savepoint"`` as above; ``"bare"`` COPY with no savepoint, raising ``_CopyRefused``
    when the unique key refuses a sample (the caller rolls the whole transaction back, ``ingest``);
    ``"skip"`` straight to the skipping insert (the batch that COPY refused)."""
    if not samples:
        return 0
    if connection.vendor == "postgresql":
        table = Sample._meta.db_table
        if copy != "skip":
            try:
                _copy(node_id, samples, received_at, savepoint=copy == "savepoint")
                return len(samples)
            except IntegrityError as exc:
                if copy == "bare":
                    raise _CopyRefused from exc
                # some of them are stored already: the savepoint took the COPY back
        sql = (
            f"INSERT INTO {table} (node_id, metric, ts, value, received_at) "  # noqa: S608 (our own table name)
            "SELECT %s, m, t, v, %s FROM unnest(%s::text[], %s::bigint[], %s::float8[]) AS u(m, t, v) "
            "ON CONFLICT (node_id, metric, ts) DO NOTHING"
        )
        metrics, stamps, values = _columns(samples)
        with connection.cursor() as cursor:
            cursor.execute(sql, [node_id, received_at, metrics, stamps, values])
            return cursor.rowcount
    before = Sample.objects.filter(node_id=node_id).count()
    rows = [Sample(node_id=node_id, metric=m, ts=ts, value=v, received_at=received_at) for m, ts, v in samples]
    Sample.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    return Sample.objects.filter(node_id=node_id).count() - before


def _copy(node_id, samples: list[tuple[str, int, float]], received_at: int, *, savepoint: bool) -> None:
    columns = "(node_id, metric, ts, value, received_at)"
    statement = f"COPY {Sample._meta.db_table} {columns} FROM STDIN (FORMAT binary)"
    # wrap_database_errors: psycopg's UniqueViolation arrives as Django's IntegrityError. Without a
    # savepoint, a refused COPY marks the enclosing transaction for rollback (Django's atomic).
    with (
        transaction.atomic(savepoint=savepoint),
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(statement) as copy,
    ):
        copy.write(_copy_binary(node_id, samples, received_at))


# COPY's binary format (PostgreSQL's "COPY", "Binary Format"): a signature, flags and an empty header
# extension; per row the field count, then each field as its length and its bytes (uuid 16, text as
# UTF-8, int8 and float8 8 bytes big-endian); -1 ends the data.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
_COPY_ROW_TAIL = struct.Struct("!iqidiq")  # ts, value, received_at, each after its length (8)


def _copy_binary(node_id, samples: list[tuple[str, int, float]], received_at: int) -> bytes:
    """The batch in COPY's binary format. Rather than text, because PostgreSQL then reads each value
    as it is stored (no parsing of a uuid, two integers and a float per row: a fifth of the COPY's
    time on the server) and a float arrives bit for bit (-0.0 and subnormals included). Built by C
    loops: the row's head (field count, node, metric) is made once per metric name, the rest by one
    ``struct`` per row. A ts is an int and a value a finite float (the checked rows' are)."""
    metrics, stamps, values = _columns(samples)
    node = node_id.bytes if isinstance(node_id, uuid.UUID) else uuid.UUID(str(node_id)).bytes
    heads = {}
    for name in set(metrics):
        encoded = name.encode()
        heads[name] = struct.pack("!hi16si", 5, 16, node, len(encoded)) + encoded
    eight = repeat(8)
    tails = map(_COPY_ROW_TAIL.pack, eight, stamps, eight, map(float, values), eight, repeat(int(received_at)))
    rows = b"".join(chain.from_iterable(zip(map(heads.__getitem__, metrics), tails, strict=True)))
    return _COPY_HEADER + rows + _COPY_TRAILER


def _report_upsert(node: Node, *, latest: dict, services: dict, count: int) -> None:
    """The node's report after a batch: reported now, the batch's services (when it had any), its
    count added and each metric's latest ``[ts, value]`` merged in (the higher ts; the batch's on a
    tie), a pod's metric not reported for a day forgotten. On PostgreSQL one upsert does it all
    (``_report_upsert_sql``); elsewhere the row is locked, merged in Python and saved."""
    if connection.vendor == "postgresql":
        _report_upsert_sql(node.pk, latest=latest, services=services, count=count)
    else:
        _report_upsert_orm(node, latest=latest, services=services, count=count)


# The merge of _report_upsert_orm in one statement: INSERT … ON CONFLICT DO UPDATE takes the row lock
# that SELECT … FOR UPDATE took (a concurrent batch of the same node waits, then merges into the row as
# that one left it), and the merge reads the stored figures where they are instead of sending them
# back and forth. ``excluded`` is the proposed row: the batch's figures.
_REPORT_UPSERT = """
    INSERT INTO {table} AS r (node_id, reported_at, services, latest, samples_total)
    VALUES (%s, %s, %s::jsonb, %s::jsonb, %s)
    ON CONFLICT (node_id) DO UPDATE SET
        reported_at = excluded.reported_at,
        services = CASE WHEN excluded.services = '{{}}'::jsonb THEN r.services ELSE excluded.services END,
        samples_total = r.samples_total + excluded.samples_total,
        latest = (
            SELECT COALESCE(jsonb_object_agg(m.k, m.v), '{{}}'::jsonb)
            FROM (
                SELECT k, CASE WHEN n.v IS NULL THEN o.v WHEN o.v IS NULL THEN n.v
                               WHEN (n.v ->> 0)::numeric >= (o.v ->> 0)::numeric THEN n.v ELSE o.v END AS v
                FROM jsonb_each(r.latest) AS o(k, v) FULL JOIN jsonb_each(excluded.latest) AS n(k, v) USING (k)
            ) AS m
            WHERE NOT (m.k LIKE 'pod.%%' AND (m.v ->> 0)::float8 < %s::float8)
        )
"""


def _report_upsert_sql(node_id, *, latest: dict, services: dict, count: int) -> None:
    cutoff = time.time() - 86400  # pods come and go: a pod's metric not reported for a day is dropped
    sql = _REPORT_UPSERT.format(table=NodeReport._meta.db_table)
    params = [node_id, datetime.now(tz=UTC), json.dumps(services), json.dumps(latest), count, cutoff]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _report_upsert_orm(node: Node, *, latest: dict, services: dict, count: int) -> None:
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
