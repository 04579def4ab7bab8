"""`make bench` (metrics part): samples ingested per second through the signed batch endpoint, next to
a bare bulk insert of the same rows (the floor: ``bulk_create``, and PostgreSQL's COPY), and their
ratios. Figures, never pass/fail.

``run() -> dict`` returns the figures (for whoever wires the benches together); ``python
bench/metrics.py`` prints them and merges them into var/bench.json (or $BENCH_OUT) under
"metrics_ingest". Needs DATABASE_URL (PostgreSQL); `make bench` starts a throwaway one.
Sizes from the environment: BENCH_METRIC_SAMPLES (default 200000), BENCH_METRIC_BATCH (default 5000).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpanel.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from agent import signing  # noqa: E402
from agent.metrics import NODE_METRICS, POD_METRICS  # noqa: E402
from apps.metrics.models import Sample  # noqa: E402
from apps.nodes import agent_secret  # noqa: E402
from apps.nodes.services import node_create  # noqa: E402
from apps.tenancy.models import Tenant  # noqa: E402
from apps.tenancy.scoping import tenant_scope  # noqa: E402

INGEST = "/api/v1/hosting/server-metrics/ingest"


def _node(tenant, hostname: str):
    with tenant_scope(tenant):
        node, _ = node_create(tenant=tenant, data={
            "hostname": hostname, "roles": ["web", "pods"],
            "capacity": {"vcpu": 4, "memory_mb": 4096, "disk_gb": 40, "max_pods": 20},
        })  # fmt: skip
    return node


def _batches(n: int, size: int) -> list[list[list]]:
    """n samples as an agent sends them: every metric of the node and of 10 pods, one reading a second."""
    metrics = list(NODE_METRICS) + [f"pod.mp-bench{p}.{m}" for p in range(10) for m in POD_METRICS]
    start = int(time.time()) - n // len(metrics) - 60
    samples = [[metrics[i % len(metrics)], start + i // len(metrics), float(i % 1000)] for i in range(n)]
    return [samples[i : i + size] for i in range(0, n, size)]


def run() -> dict:
    call_command("migrate", verbosity=0)
    n = int(os.environ.get("BENCH_METRIC_SAMPLES", 200_000))
    size = int(os.environ.get("BENCH_METRIC_BATCH", 5000))
    settings.MPANEL_METRICS_MAX_BATCH = max(settings.MPANEL_METRICS_MAX_BATCH, size)
    # One reading a second of 52 metrics: a large n reaches further back than ingest takes by default.
    settings.MPANEL_METRICS_MAX_AGE = max(settings.MPANEL_METRICS_MAX_AGE, n // 40 + 600)
    tenant = Tenant.objects.create(name=f"Bench metrics {time.time_ns()}")
    endpoint_node, floor_node = _node(tenant, "ingest.bench"), _node(tenant, "floor.bench")
    copy_node = _node(tenant, "copy.bench")
    secret = agent_secret.derive(endpoint_node)
    batches = _batches(n, size)
    bodies = [json.dumps({"samples": batch}).encode() for batch in batches]

    client = Client()
    # Warm up: the first request loads the URL configuration and every API module (seconds, once).
    assert client.post(INGEST, b"{}", content_type="application/json").status_code == 401
    received = int(time.time())
    table = Sample._meta.db_table

    def endpoint_batch(body: bytes, batch: list) -> None:
        headers = {"X-Mpanel-Node": str(endpoint_node.pk), **signing.sign(secret, "POST", INGEST, body)}
        response = client.generic("POST", INGEST, body, content_type="application/json",
                                  **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()})  # fmt: skip
        assert response.status_code == 200, response.content[:500]
        # len(batch), not the body parsed again: that was the benchmark's own work, timed as the endpoint's.
        assert response.json()["stored"] == len(batch)

    def floor_batch(body: bytes, batch: list) -> None:
        # The floor: the same rows, one bare bulk_create per batch (no HTTP, JSON, signature or checks).
        with transaction.atomic():
            Sample.objects.bulk_create(
                [Sample(node_id=floor_node.pk, metric=m, ts=ts, value=v, received_at=received) for m, ts, v in batch]
            )

    def copy_batch(body: bytes, batch: list) -> None:
        # And PostgreSQL's own fastest way in: COPY, one per batch (no duplicate check possible).
        statement = f"COPY {table} (node_id, metric, ts, value, received_at) FROM STDIN"
        with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
            for m, ts, v in batch:
                copy.write_row((copy_node.pk, m, ts, v, received))

    # Batch by batch, the three ways in turn (the order turned by one each batch), rather than each way
    # for all batches in turn: the table grows alike under all three, and a burst of load on a shared
    # machine meets every side instead of the one being measured then.
    sides = [("endpoint", endpoint_batch), ("floor", floor_batch), ("copy", copy_batch)]
    spent = dict.fromkeys([name for name, _ in sides], 0.0)
    for i, (body, batch) in enumerate(zip(bodies, batches, strict=True)):
        for name, side in sides[i % 3 :] + sides[: i % 3]:
            started = time.perf_counter()
            side(body, batch)
            spent[name] += time.perf_counter() - started
    endpoint, floor, copied = spent["endpoint"], spent["floor"], spent["copy"]

    # Again, every sample already stored: what a retried batch costs.
    started = time.perf_counter()
    for body in bodies[: max(1, len(bodies) // 4)]:
        headers = {"X-Mpanel-Node": str(endpoint_node.pk), **signing.sign(secret, "POST", INGEST, body)}
        response = client.generic("POST", INGEST, body, content_type="application/json",
                                  **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()})  # fmt: skip
        assert response.json()["stored"] == 0
    replayed = sum(len(b) for b in batches[: max(1, len(bodies) // 4)])
    duplicates = time.perf_counter() - started

    stored = Sample.objects.filter(node=endpoint_node).count()
    Sample.objects.filter(node__in=[endpoint_node, floor_node, copy_node])._raw_delete(
        Sample.objects.db
    )  # no leftovers
    return {
        "database": connection.vendor,
        "samples": n,
        "batch": size,
        "stored": stored,
        "endpoint_seconds": round(endpoint, 2),
        "endpoint_samples_per_second": round(n / endpoint),
        "floor_seconds": round(floor, 2),
        "floor_samples_per_second": round(n / floor),
        "endpoint_vs_floor": round(floor / endpoint, 2),  # 1.0 = as fast as a bare bulk insert
        "copy_seconds": round(copied, 2),
        "copy_samples_per_second": round(n / copied),
        "endpoint_vs_copy": round(copied / endpoint, 2),
        "duplicate_samples_per_second": round(replayed / duplicates),
    }


def main() -> None:
    if connection.vendor != "postgresql":
        sys.exit("the metrics benchmark needs PostgreSQL (DATABASE_URL)")
    results = {"metrics_ingest": run()}
    print(f"{'benchmark':<16} {'figure':<30} value")
    for name, figures in results.items():
        for key, value in figures.items():
            print(f"{name:<16} {key:<30} {value}")
    out = Path(os.environ.get("BENCH_OUT") or Path(settings.VAR_DIR) / "bench.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing.update(results)
    out.write_text(json.dumps(existing, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
