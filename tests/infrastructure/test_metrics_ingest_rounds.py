"""The metrics ingest's fifth-round shortcuts (issue 21) change nothing that a node or a reader sees:
the garbage collector is paused for a request and always restored; the node's report written by one
statement holds what the select-and-save path writes; a batch with stored samples, COPYed without a
savepoint when the ingest is the outermost transaction, stores and answers what it did before."""

from __future__ import annotations

import gc
import json
import time

import pytest
from django.db import connection, transaction

from apps.metrics import services
from apps.metrics.models import IngestNonce, NodeReport, Sample
from tests.infrastructure.test_metrics import post_batch, recent, secret_node


def test_the_collector_is_paused_and_always_restored():
    assert gc.isenabled()
    with services.collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), services.collector_paused():
        raise ZeroDivisionError
    assert gc.isenabled()
    gc.disable()  # paused by someone else: left as it was
    try:
        with services.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.django_db
def test_a_request_is_handled_with_the_collector_paused(tenant_a, monkeypatch):
    node = secret_node(tenant_a, hostname="paused")
    seen = []
    real = services.parse_batch
    monkeypatch.setattr(services, "parse_batch", lambda body: seen.append(gc.isenabled()) or real(body))
    response, _ = post_batch(node, {"samples": [["cpu.percent", recent(), 1.5]]})
    assert response.status_code == 200 and response.json()["stored"] == 1
    assert seen == [False] and gc.isenabled()
    bad, _ = post_batch(node, {"samples": [["cpu.percent", recent(), True]]})
    assert bad.status_code == 400 and gc.isenabled()
    unsigned = post_batch(node, {}, headers={"X-Mpanel-Node": str(node.pk)})[0]
    assert unsigned.status_code == 401 and gc.isenabled()
    assert json.loads(unsigned.content)["code"] == "not_authenticated"


@pytest.mark.django_db
def test_the_report_upsert_in_one_statement_writes_what_the_orm_path_writes(tenant_a):
    now = int(time.time())
    day_old = now - 90_000
    steps = [  # (latest, services, count): a first report, then merges
        ({"cpu.percent": [now - 5, 1.5], "pod.mp-a.pids": [day_old, 2.0]}, {"nginx": {"state": "up", "detail": ""}}, 3),
        ({"cpu.percent": [now - 10, 9.0], "mem.used_bytes": [now, 1e300]}, {}, 2),  # older: kept; services kept
        ({"cpu.percent": [now - 5, 1 / 3], "pod.mp-b.pids": [now, -0.0]}, {"php": {"state": "down", "detail": "x"}}, 5),
        ({"pod.mp-c.pids": [day_old, 1.0], "mem.used_bytes": [now + 1, 5e-324]}, {}, 1),
        ({}, {}, 0),
    ]
    by_sql, by_orm = secret_node(tenant_a, hostname="sql-report"), secret_node(tenant_a, hostname="orm-report")
    for latest, states, count in steps:
        services._report_upsert_sql(by_sql.pk, latest=latest, services=states, count=count)
        services._report_upsert_orm(by_orm, latest=latest, services=states, count=count)
        sql, orm = NodeReport.objects.get(node=by_sql), NodeReport.objects.get(node=by_orm)
        assert (sql.latest, sql.services, sql.samples_total) == (orm.latest, orm.services, orm.samples_total)
        assert abs((sql.reported_at - orm.reported_at).total_seconds()) < 5
    assert "pod.mp-a.pids" not in sql.latest and sql.latest["cpu.percent"] == [now - 5, 1 / 3]


def _rows(node) -> list[tuple]:
    return sorted(Sample.objects.filter(node=node).values_list("metric", "ts", "value", "received_at"))


@pytest.mark.django_db(transaction=True)
def test_copy_without_a_savepoint_stores_and_answers_what_the_savepoint_path_does(tenant_a):
    """Outermost (as served: no savepoint, a refused COPY starts the transaction again) and inside an
    enclosing transaction (the savepoint path), the same batches give the same rows, answers,
    reports and nonces."""
    t = recent()
    first = [["cpu.percent", t + i, i / 7] for i in range(10)]
    batches = [
        first,
        [*first[5:], ["cpu.percent", t + 20, 2.5]],  # some stored already: COPY is refused
        [["mem.used_bytes", t, 1.0], ["mem.used_bytes", t, 2.0]],  # the same sample twice in a batch
        [["mem.used_bytes", t + 1, 3.0]],
    ]
    outermost, enclosed = secret_node(tenant_a, hostname="bare-copy"), secret_node(tenant_a, hostname="savepoint")
    answers = {outermost.pk: [], enclosed.pk: []}
    for i, samples in enumerate(batches):
        batch = services.parse_batch(json.dumps({"samples": samples}).encode())
        assert not connection.in_atomic_block
        answers[outermost.pk].append(services.ingest(node=outermost, batch=batch, nonce=f"n{i}").as_dict())
        with transaction.atomic():
            answers[enclosed.pk].append(services.ingest(node=enclosed, batch=batch, nonce=f"n{i}").as_dict())
    assert answers[outermost.pk] == answers[enclosed.pk]
    assert [a["stored"] for a in answers[outermost.pk]] == [10, 1, 1, 1]
    received = {r[3] for r in _rows(outermost) + _rows(enclosed)}
    assert len(received) <= 2  # the same second or the next: compare without it
    assert [r[:3] for r in _rows(outermost)] == [r[:3] for r in _rows(enclosed)]
    one, other = NodeReport.objects.get(node=outermost), NodeReport.objects.get(node=enclosed)
    assert (one.latest, one.samples_total) == (other.latest, other.samples_total) == (one.latest, 19)
    for node in (outermost, enclosed):
        assert sorted(IngestNonce.objects.filter(node=node).values_list("nonce", flat=True)) == ["n0", "n1", "n2", "n3"]
    # A replayed nonce is refused on either path, and nothing of it stays.
    batch = services.parse_batch(json.dumps({"samples": [["cpu.percent", t + 30, 1]]}).encode())
    with pytest.raises(services.IngestRefused):
        services.ingest(node=outermost, batch=batch, nonce="n1")
    with pytest.raises(services.IngestRefused), transaction.atomic():
        services.ingest(node=enclosed, batch=batch, nonce="n1")
    assert Sample.objects.filter(ts=t + 30).count() == 0


@pytest.mark.django_db
def test_binary_copy_stores_what_the_skipping_insert_stores(tenant_a):
    """COPY's binary data (built by hand) against PostgreSQL's own reading of the same values in
    ``INSERT … SELECT FROM unnest(arrays)``: every value bit for bit, every name and ts."""
    t = recent()
    values = [0.1, 1e300, -1e300, -0.0, 5e-324, 2.2250738585072014e-308, 123456789.123456789, 2.0**53 + 1, 7.0, 1 / 3]
    names = ["cpu.percent", "pod.mp-a_b-9.cpu_percent", "pod." + "x" * 128 + ".memory_limit_bytes"]
    samples = [[m, t + i, v] for i, v in enumerate(values) for m in names]
    rows = services.parse_batch(json.dumps({"samples": samples}).encode())["samples"]
    assert isinstance(rows, services.Rows) and rows.columns is not None
    copied, inserted = secret_node(tenant_a, hostname="binary-copy"), secret_node(tenant_a, hostname="unnest")
    assert services._insert(copied.pk, rows, 1234, copy="savepoint") == len(rows)
    assert services._insert(inserted.pk, list(rows), 1234, copy="skip") == len(rows)  # plain list: no columns
    assert _rows(copied) == _rows(inserted) == sorted((m, ts, v, 1234) for m, ts, v in rows)
    assert [str(r[2]) for r in _rows(copied)] == [str(r[2]) for r in _rows(inserted)]  # -0.0 stays -0.0
    assert services._insert(copied.pk, rows, 1235, copy="savepoint") == 0  # all stored: COPY refused, none again
    assert _rows(copied) == _rows(inserted)
