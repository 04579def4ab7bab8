"""The metrics ingest's fast paths (issue 21) answer what the generic ones answer: a body read by plain
``json.loads`` and checked a column at a time gives the data, or the 400 and its words, of
``apps.common.parsers.loads`` and the sample-by-sample check; the COPY text stores every value as
psycopg's own adaptation does; a replayed nonce is still refused without a savepoint."""

from __future__ import annotations

import json
import time

import pytest
from django.core.exceptions import ValidationError
from rest_framework.exceptions import APIException

from agent.metrics import NODE_METRICS
from apps.common import parsers
from apps.common.exceptions import DomainError
from apps.metrics import services
from apps.metrics.models import IngestNonce, NodeReport, Sample
from tests.infrastructure.test_metrics import post_batch, recent, secret_node


def _generic(body: bytes):
    """What parse_batch answered before the fast paths: parsers.loads, then the one-by-one check."""
    try:
        data = parsers.loads(body)
    except parsers.InvalidJSON as exc:
        return _error(services.InvalidInput(f"The body is not JSON: {exc.detail}", field="non_field_errors"))
    try:
        return services._check_batch(data)
    except (APIException, DomainError, ValidationError) as exc:
        return _error(exc)


def _error(exc) -> tuple:
    detail = getattr(exc, "detail", None) or getattr(exc, "message_dict", None) or str(exc)
    fields = (getattr(exc, "field", None), getattr(exc, "code", None), getattr(exc, "status_code", None))
    return (type(exc).__name__, json.dumps(detail, default=str, sort_keys=True), *fields)


def _fast(body: bytes):
    try:
        return services.parse_batch(body)
    except (APIException, DomainError, ValidationError) as exc:
        return _error(exc)


def _bodies() -> list[bytes]:
    t = recent()
    good = [["cpu.percent", t, 1.5], ["mem.used_bytes", t, 123], ["pod.mp-x.pids", t + 1, 0.25]]

    def raw(samples_and_rest: str) -> str:
        return '{"samples": ' + samples_and_rest.replace("@T", str(t)) + "}"

    texts = [
        json.dumps({"samples": good}),
        json.dumps({"samples": good, "services": {"nginx": {"state": "up", "detail": 3.5}}}),
        json.dumps({"samples": good, "extra": [[[1.0]]]}),
        raw('[["cpu.percent", @T, NaN]]'),
        raw('[["cpu.percent", @T, Infinity]]'),
        raw('[["cpu.percent", @T, 1e999]]'),
        raw('[["cpu.percent", @T, 1]], "services": {"x": {"detail": -Infinity}}'),
        raw('[["cpu.percent", @T, 1]], "deep": ' + "[" * 40 + "]" * 40),
        raw('[["cpu.percent", @T, 1]], "deep": ' + "[" * 30 + "]" * 30),
        raw('[["cpu.percent", @T, ' + "9" * 400 + "]]"),
        raw('[["cpu.percent", @T, ' + "9" * 5000 + "]]"),
        raw('[["cpu.percent", @T, 1], ["cpu.percent", @T, 1.0, 2]]'),
        json.dumps({"samples": [["cpu.percent", t, True]]}),
        json.dumps({"samples": [["cpu.percent", True, 1]]}),
        json.dumps({"samples": [["no.such", t, 1]]}),
        json.dumps({"samples": [[["cpu.percent"], t, 1]]}),
        json.dumps({"samples": [["cpu.percent", t - 10**7, 1]]}),
        json.dumps({"samples": [["cpu.percent", float(t), 1e300], ["cpu.percent", t, -1e300]]}),
        json.dumps({"samples": [["cpu.percent", t, 1e301]]}),
        json.dumps({"samples": [["cpu.percent", t, 10**301]]}),
        json.dumps({"samples": [["cpu.percent", t, 1], {"m": 1}]}),
        json.dumps({"samples": []}),
        json.dumps({"samples": "x"}),
        json.dumps([1, 2]),
        json.dumps({"samples": good, "services": {"bad name!": {"state": "up"}}}),
        json.dumps({"samples": good, "services": {"nginx": {"state": "sideways"}}}),
        json.dumps({"samples": good, "shield": "nope"}),
        "{not json",
    ]
    bodies = [text.encode() for text in texts]
    bodies += ["\ufeff".encode() + bodies[0], bodies[0].decode().encode("utf-16"), b'{"samples": "\xff"}']
    return bodies


@pytest.mark.django_db
def test_the_quick_reading_answers_what_the_generic_one_answers(settings):
    settings.MPANEL_METRICS_MAX_BATCH = 5
    for body in _bodies():
        assert _fast(body) == _generic(body), body[:120]
    too_many = json.dumps({"samples": [["cpu.percent", recent(), i] for i in range(6)]}).encode()
    assert _fast(too_many) == _generic(too_many)
    settings.MPANEL_JSON_MAX_DEPTH = 2  # shallower than a sample: only the generic reader answers
    for body in _bodies()[:3]:
        assert _fast(body) == _generic(body)


def test_the_column_check_keeps_what_the_sample_by_sample_check_keeps():
    t = int(time.time()) - 100
    samples = [[NODE_METRICS[i % 5], t + i // 5, [1, 0.5, -2.25, 10**6, 1e-300][i % 5]] for i in range(50)]
    rows = services._rows_at_once(samples, t - 10, t + 100)
    assert rows == [(m, int(ts), float(v)) for m, ts, v in samples]
    assert all(type(ts) is int and type(v) is float for _m, ts, v in rows)
    assert services._rows_at_once([*samples, ["cpu.percent", t, float("nan")]], t - 10, t + 100) is None
    assert services._rows_at_once([*samples, ["cpu.percent", t + 1000, 1]], t - 10, t + 100) is None


def test_latest_is_the_highest_ts_in_any_order():
    def loop(samples):
        latest = {}
        for metric, ts, value in samples:
            if metric not in latest or ts >= latest[metric][0]:
                latest[metric] = [ts, value]
        return latest

    ordered = [("a", 1, 1.0), ("b", 1, 2.0), ("a", 2, 3.0), ("a", 2, 4.0), ("b", 3, 5.0)]
    shuffled = [("a", 5, 1.0), ("b", 1, 2.0), ("a", 2, 3.0), ("a", 5, 4.0), ("b", 0, 5.0)]
    for samples in (ordered, shuffled, []):
        assert services._latest(samples) == loop(samples)
        assert list(services._latest(samples)) == list(loop(samples))


@pytest.mark.django_db(transaction=True)
def test_copy_text_stores_every_value_exactly_and_a_replay_is_refused(tenant_a, tenant_b):
    """Through the endpoint outside any test transaction, so ingest is the outermost one (as served)."""
    node = secret_node(tenant_a, hostname="fast-ingest")
    t = recent()
    values = [0.1, 1e300, -1e300, -0.0, 5e-324, 123456789.123456789, 2.0**53 + 1, 7, 1 / 3]
    samples = [[m, t + i, v] for i, v in enumerate(values) for m in ("cpu.percent", "pod.mp-a_b-9.cpu_percent")]
    response, signed = post_batch(node, {"samples": samples})
    assert response.status_code == 200, response.content
    assert response.json() == {"received": len(samples), "stored": len(samples), "duplicates": 0}
    stored = {(s.metric, s.ts): s.value for s in Sample.objects.filter(node=node)}
    assert stored == {(m, ts): float(v) for m, ts, v in samples}
    assert all(str(stored[(m, ts)]) == str(float(v)) for m, ts, v in samples)  # -0.0 stays -0.0
    report = NodeReport.objects.get(node=node)
    assert report.latest["cpu.percent"] == [t + len(values) - 1, 1 / 3] and report.samples_total == len(samples)
    # The same request again: its nonce is refused, nothing more is stored or counted.
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signed.items()}
    from tests.conftest import client_for

    again = client_for().generic("POST", "/api/v1/hosting/server-metrics/ingest", json.dumps({"samples": samples}),
                                 content_type="application/json", **extra)  # fmt: skip
    assert again.status_code == 401
    assert IngestNonce.objects.filter(node=node).count() == 1
    assert NodeReport.objects.get(node=node).samples_total == len(samples)
    # A new request with some samples stored already: COPY refuses, the skipping insert stores the rest.
    more = [*samples[:4], ["cpu.percent", t + 100, 9.5]]
    response, _ = post_batch(node, {"samples": more})
    assert response.json() == {"received": 5, "stored": 1, "duplicates": 4}
    assert NodeReport.objects.get(node=node).samples_total == len(samples) + 5
    assert IngestNonce.objects.filter(node=node).count() == 2


def test_a_good_batch_is_read_the_quick_way_only(monkeypatch):
    real, calls = parsers.loads, []
    monkeypatch.setattr(parsers, "loads", lambda *a, **k: calls.append(1) or real(*a, **k))
    t = recent()
    good = json.dumps({"samples": [["cpu.percent", t, 1.5]], "services": {"nginx": {"state": "up"}}}).encode()
    assert services.parse_batch(good)["samples"] == [("cpu.percent", t, 1.5)]
    assert not calls
    services.parse_batch(json.dumps({"samples": [["cpu.percent", t, 1]], "x": [[[[1]]]]}).encode())
    assert not calls
    with pytest.raises(ValidationError):
        services.parse_batch(json.dumps({"samples": [["cpu.percent", t, True]]}).encode())
    assert calls  # a bad batch: the generic reader answers
