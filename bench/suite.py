"""`make bench`: every figure as a ratio to a floor measured in the same run, on the same data.

Runs on the throwaway PostgreSQL and Redis of scripts/test.sh (MPANEL_BENCH=1). Prints a table and
merges the figures into var/bench.json (BENCH_OUT). Sizes from the environment, defaults = issue #9:

    BENCH_ROWS=1000000 BENCH_TENANTS=1000   the list benchmark's table
    BENCH_HTTP_SECONDS=10                   wrk time per endpoint (after 2 s of warm-up), in
    BENCH_HTTP_ROUNDS=5                     alternating rounds of BENCH_HTTP_SECONDS/rounds each
    BENCH_JOBS=2000                         no-op jobs and bare tasks, in
    BENCH_JOB_ROUNDS=4                      alternating rounds (bare tasks, jobs) of BENCH_JOBS/rounds each
    BENCH_WEBHOOKS=2000                     webhook deliveries (and as many to the floor), and as many again
    BENCH_WEBHOOK_ROUNDS=4                  for the answer alone, in rounds alternating with the floor's
    BENCH_SUBSCRIPTIONS=100000              the billing run
    BENCH_SSL_RUNS=3                        certificates issued (after a warm-up), by the panel and by the floor
    BENCH_ONLY=list,jobs,webhooks,billing_run,backups,ssl,metrics   a subset

    list   /api/v1/customers/ (a MEMBER's token, X-Tenant-ID; scoped, role-checked, filtered, paginated) over
           real HTTP: gunicorn on loopback, 2 sync workers, wrk with 4 connections; floors on the same server:
           a bare DRF ListAPIView over the same table and page, and a plain Django view returning fixed JSON.
    jobs   no-op jobs through the outbox and the real Celery worker (prefork, concurrency 2), submit to
           SUCCEEDED; floor: a bare no-op Celery task on the same worker (it only counts itself in Redis).
           Also reported: each side's share of time in its sending loop, and its CPU per task by process
           (this one, the worker, PostgreSQL, Redis): with everything on two cores, the sum is what counts.
    webhooks   signed generic payment.succeeded deliveries, in-process (Django test client): stored and
           answered, then applied to an invoice by the real worker (answered/s, and applied end to end/s: from
           the first delivery to the last applied); floor: a view that checks the signature and stores the row.
    billing    billing_run over N subscriptions of N customers (one tenant); floor: bulk_create of the same
           rows the run writes (invoice, line, charge, 3 audit events per invoice) in batches of 1000.
    ssl        POST /api/v1/enterprise/ssl (HTTP-01, pebble) to nginx serving the verified certificate; floor: a
           bare acme-library issuance of the same name against the same pebble (bench/certificates.py).
    metrics    bench/metrics.py's run(): the signed ingest endpoint; floors bulk_create and COPY of the same rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
os.environ["MPANEL_JOBS_EAGER"] = "0"  # jobs and emails go to the broker
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench.server import Gunicorn, cpu_seconds, cpu_used, machine, stop_group, wrk  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="mpanel-bench-"))


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def say(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# --- list: 50 rows of one tenant from 1,000,000 -----------------------------------------------------------


def load_customers(rows: int, tenants: int) -> list:
    from apps.tenancy.models import Tenant

    say(f"loading {rows} customers across {tenants} tenants with COPY")
    made = Tenant.objects.bulk_create(
        [Tenant(name=f"Bench tenant {i}", slug=f"bench-tenant-{i}") for i in range(tenants)], batch_size=1000
    )
    per = rows // tenants
    base = datetime(2025, 1, 1, tzinfo=UTC)
    cols = ("id, created_at, updated_at, tenant_id, kind, name, company, email, billing_email, phone, tax_id, "
            "currency, status, address_line1, address_line2, city, state, postal_code, country, notes")  # fmt: skip
    import uuid

    started = time.perf_counter()
    with connection.cursor() as cur, cur.connection.cursor().copy(f"COPY customers_customer ({cols}) FROM STDIN") as cp:
        for t_index, tenant in enumerate(made):
            for i in range(per):
                at = base + timedelta(seconds=i * tenants + t_index)
                email = f"c{i}@t{t_index}.example"
                cp.write_row((uuid.uuid4(), at, at, tenant.pk, "person", f"Customer {i}", "", email,
                              "", "", "", "EUR", "active", "", "", "", "", "", "", ""))  # fmt: skip
    with connection.cursor() as cur:
        cur.execute("ANALYZE customers_customer")
    say(f"loaded in {time.perf_counter() - started:.0f} s")
    return made


def bench_list(seconds: int) -> dict:
    from apps.accounts.models import AuthToken
    from apps.accounts.models import User as UserModel
    from apps.tenancy.models import Membership
    from apps.tenancy.roles import Role

    rows, tenants = env_int("BENCH_ROWS", 1_000_000), env_int("BENCH_TENANTS", 1000)
    made = load_customers(rows, tenants)
    tenant = made[len(made) // 2]
    user = UserModel.objects.create_user("bench-member@mpanel.local", "bench-password-123")
    Membership.objects.create(tenant=tenant, user=user, role=Role.MEMBER)
    _token, raw = AuthToken.issue(user=user, ttl=settings.MPANEL_TOKEN_TTL)
    headers = {"Authorization": f"Bearer {raw}", "X-Tenant-ID": str(tenant.pk)}
    endpoints = {
        "api": "/api/v1/customers/",
        "api_cursor": "/api/v1/customers/?page_mode=cursor",  # the keyset page: no COUNT(*)
        "bare_drf": f"/bench/customers/{tenant.pk}",
        "fixed_json": "/bench/fixed",
    }
    # Queries per request, in-process (the same views and settings as the server's).
    client = Client(HTTP_AUTHORIZATION=headers["Authorization"], HTTP_X_TENANT_ID=headers["X-Tenant-ID"])
    queries = {}
    for name, path in endpoints.items():
        client.get(path)
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
        if name != "fixed_json":
            assert len(response.json()["results"]) == 50, path
        queries[name] = len(ctx.captured_queries)
    server = Gunicorn(WORK)
    lua = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    out: dict = {"rows": rows, "tenants": tenants, "page": 50, "transport": "HTTP, gunicorn 2 sync workers, wrk -c4"}
    try:
        server.start()
        # Every endpoint warmed before any is measured: a worker's first requests import and compile what
        # they use, and on a loaded machine 2 s of its own warm-up left part of that to the first endpoint
        # measured (the API list measured 0.65 of itself when run again after the floors).
        for path in endpoints.values():
            wrk(server.url + path, lua=lua, seconds=2, workdir=WORK)
        # Measured in alternating rounds (each endpoint for seconds/rounds, the order turned by one each
        # round) rather than each for its whole time in turn: a burst of load on a shared machine then
        # meets every endpoint, not only the one being measured (10 s each in turn moved the ratio from
        # 0.65 to 0.82 between idle runs of the same code). Each figure is its requests over its time.
        rounds = max(1, env_int("BENCH_HTTP_ROUNDS", 5))
        per = max(1, round(seconds / rounds))
        names = list(endpoints)
        totals = {name: [0, 0.0] for name in names}
        p50s: dict[str, list[float]] = {name: [] for name in names}
        per_round: list[dict[str, float]] = []
        for r in range(rounds):
            this: dict[str, float] = {}
            for name in names[r % len(names) :] + names[: r % len(names)]:
                result = wrk(server.url + endpoints[name], lua=lua, seconds=per, workdir=WORK)
                if result["error_count"]:
                    raise RuntimeError(f"{endpoints[name]}: {result['errors']}")
                totals[name][0] += result["requests"]
                totals[name][1] += result["duration_us"] / 1e6
                p50s[name].append(result["latency_ms"]["p50"])
                this[name] = result["requests_per_second"]
            per_round.append(this)
        for name in names:
            requests, elapsed = totals[name]
            out[f"{name}_rps"] = round(requests / elapsed, 1)
            out[f"{name}_p50_ms"] = sorted(p50s[name])[len(p50s[name]) // 2]
            out[f"{name}_queries"] = queries[name]
        out["rounds"] = rounds
        out["round_ratios_to_bare_drf"] = [ratio(x["api"], x["bare_drf"]) for x in per_round]
    finally:
        server.stop()
    out["ratio_to_bare_drf"] = ratio(out["api_rps"], out["bare_drf_rps"])
    out["ratio_to_fixed_json"] = ratio(out["api_rps"], out["fixed_json_rps"])
    out["cursor_ratio_to_bare_drf"] = ratio(out["api_cursor_rps"], out["bare_drf_rps"])
    return out


# --- jobs: no-op handler through the real worker vs a bare no-op task ------------------------------------


def start_worker(log: Path) -> subprocess.Popen:
    """A real Celery worker (prefork, concurrency 2) of bench/celery_bench.py: mPanel's tasks plus the floors'."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.celery_bench", "worker", "--concurrency", "2", "--pool",
         "prefork", "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-n", f"bench-{os.getpid()}-{time.time_ns()}@%h"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), BENCH_PROFILE_DIR=str(WORK)), stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def report_worker_profiles(what: str) -> None:
    """BENCH_PROFILE=1: the pool processes' profiles (bench/celery_bench.py), summed, printed to stderr."""
    files = sorted(str(p) for p in WORK.glob("worker-*.prof"))
    if not files:
        return
    import pstats

    print(f"--- profile: {what}", file=sys.stderr)
    pstats.Stats(*files, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
    for name in files:
        os.unlink(name)


def bench_jobs(n: int) -> dict:
    import redis

    from apps.jobs.models import OPEN_STATUSES, Job, JobStatus
    from apps.jobs.services import job_enqueue
    from apps.tenancy.models import Tenant
    from bench import celery_bench
    from bench.billing import profiled, report

    log = WORK / "worker.log"
    worker = start_worker(log)
    r = redis.Redis.from_url(settings.REDIS_URL)
    r.delete(celery_bench.COUNTER)

    def wait(done, what: str) -> float:
        deadline = time.monotonic() + 600
        while not done():
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not finish")
            time.sleep(0.01)  # finer than 50 ms: four rounds per side each end at the next look
        return time.perf_counter()

    try:
        # Warm-up: the worker is ready once it has run a task.
        celery_bench.noop_task.delay()
        wait(lambda: int(r.get(celery_bench.COUNTER) or 0) >= 1, "warm-up")
        r.delete(celery_bench.COUNTER)
        tenant = Tenant.objects.create(name="Bench jobs", slug=f"bench-jobs-{time.time_ns()}")
        done = Job.all_tenants.filter(tenant=tenant, status=JobStatus.SUCCEEDED)
        # Looked at every 10 ms while the worker drains: whether any job is still open (the first row of an
        # index ends it) rather than a count of every finished row so far, which grew with each round and
        # charged the jobs' side with a measurement the floor's (one Redis GET) does not pay.
        still_open = Job.all_tenants.filter(tenant=tenant, status__in=OPEN_STATUSES)
        # Alternating rounds (bare tasks, then jobs, each n/rounds, every round drained before the next):
        # a burst of load on a shared machine meets both sides rather than the one measured at the time.
        rounds = max(1, env_int("BENCH_JOB_ROUNDS", 4))
        sizes = [n // rounds + (1 if i < n % rounds else 0) for i in range(rounds)]
        bare_time = jobs_time = bare_sending = jobs_sending = 0.0
        bare_done = jobs_done = 0
        # CPU per task of each side, by process (this one sends; the worker; PostgreSQL; Redis).
        cpu = {side: dict.fromkeys(["bench", "worker", "postgres", "redis"], 0.0) for side in ("bare", "jobs")}

        def count_cpu(side: str, before: dict) -> dict:
            """Adds what each process used since ``before`` to ``side``; answers the reading, the next ``before``."""
            now = cpu_seconds({"worker": worker.pid})
            for name, used in cpu_used(before, now).items():
                cpu[side][name] += used
            return now

        profile = profiled()
        before = cpu_seconds({"worker": worker.pid})
        for size in sizes:
            say(f"{size} bare no-op tasks, then {size} no-op jobs")
            started = time.perf_counter()
            for _ in range(size):
                celery_bench.noop_task.delay()
            bare_sending += time.perf_counter() - started
            bare_done += size
            counted = wait(lambda goal=bare_done: int(r.get(celery_bench.COUNTER) or 0) >= goal, "bare tasks")
            bare_time += counted - started
            before = count_cpu("bare", before)
            started = time.perf_counter()
            for _ in range(size):
                job_enqueue(tenant=tenant, type="bench.noop")
            jobs_sending += time.perf_counter() - started
            jobs_done += size
            jobs_time += wait(lambda: not still_open.exists(), "jobs") - started
            if done.count() < jobs_done:
                raise RuntimeError(f"{jobs_done - done.count()} jobs did not succeed")
            before = count_cpu("jobs", before)
        report(profile, "job submissions")
        floor = n / bare_time
        rate = n / jobs_time
        failed = Job.all_tenants.filter(tenant=tenant).exclude(status=JobStatus.SUCCEEDED).count()
    finally:
        stop_group(worker)
    report_worker_profiles("the worker's pool processes")
    return {"jobs": n, "jobs_per_second": round(rate, 1), "bare_tasks_per_second": round(floor, 1),
            "not_succeeded": failed, "ratio_to_bare_task": ratio(rate, floor), "rounds": len(sizes),
            # How much of each side's time its sending loop took (the rest: the worker's tail).
            "bare_sending_share": ratio(bare_sending, bare_time), "jobs_sending_share": ratio(jobs_sending, jobs_time),
            "cpu_ms_per_task": {side: {name: round(used * 1000 / n, 3) for name, used in by.items()}
                                for side, by in cpu.items()},
            "transport": "Celery prefork, concurrency 2, Redis broker"}  # fmt: skip


# --- webhooks ---------------------------------------------------------------------------------------------


def bench_webhooks(n: int) -> dict:
    from apps.billing.services.webhooks import sign_generic
    from bench.billing import bench_webhooks as full
    from bench.billing import webhook_answers_in_rounds

    client = Client()
    secret = settings.MPANEL_GENERIC_WEBHOOK_SECRET

    def floor_delivery(suffix: str) -> None:
        body = json.dumps({"id": f"floor-{suffix}", "type": "payment.succeeded",
                           "data": {"invoice_id": "x", "amount": "1.00", "currency": "EUR"}}).encode()  # fmt: skip
        response = client.post("/bench/webhook", body, content_type="application/json",
                               HTTP_X_MPANEL_SIGNATURE=sign_generic(body, secret))  # fmt: skip
        assert response.status_code == 200, response.content

    # Answered when stored; applied by the real worker (the same as the jobs', started before the first event).
    worker = start_worker(WORK / "worker-webhooks.log")
    try:
        # Applied end to end: n deliveries in a row, until the worker applied the last.
        result = full(n)
        # Answered: n more deliveries (another invoice) in rounds alternating with the floor's.
        rounds = webhook_answers_in_rounds(n, floor_delivery, rounds=max(1, env_int("BENCH_WEBHOOK_ROUNDS", 4)))
    finally:
        stop_group(worker)
    report_worker_profiles("the webhook worker's pool processes (drains)")
    floor = rounds["floor_events_per_second"]
    result.update(in_a_row_events_per_second=result["events_per_second"], events_per_second=rounds["events_per_second"],
                  floor_events_per_second=floor, rounds=rounds["rounds"], transport="in-process (Django test client)",
                  ratio_to_floor=ratio(rounds["events_per_second"], floor),
                  applied_ratio_to_floor=ratio(result["applied_per_second"], floor))  # fmt: skip
    return result


# --- billing ------------------------------------------------------------------------------------------------


def bench_billing(n: int) -> dict:
    from apps.audit.models import AuditEvent
    from apps.billing.models import Invoice, InvoiceLine, Subscription, SubscriptionCharge
    from bench.billing import bench_billing_run

    say(f"billing run over {n} subscriptions")
    result = bench_billing_run(n)
    tenant_id = Invoice.all_tenants.order_by("-created_at").values_list("tenant_id", flat=True).first()
    subs = list(Subscription.all_tenants.filter(tenant_id=tenant_id).values_list("pk", "customer_id"))
    say(f"floor: bulk insert of the same {len(subs)} invoices' rows")
    now = datetime.now(UTC)
    started = time.perf_counter()
    with transaction.atomic():
        for i in range(0, len(subs), 1000):
            chunk = subs[i : i + 1000]
            invs = [Invoice(tenant_id=tenant_id, customer_id=c, number=f"FLOOR-{i + k}", status="open",
                            currency="EUR", issue_date=date(2026, 2, 10), due_date=date(2026, 2, 24),
                            subtotal=Decimal("9.99"), total=Decimal("9.99"), amount_due=Decimal("9.99"),
                            issued_at=now, billing_details={"name": "C"})
                    for k, (_s, c) in enumerate(chunk)]  # fmt: skip
            Invoice.all_tenants.bulk_create(invs)
            lines = [InvoiceLine(tenant_id=tenant_id, invoice=inv, description="Bench plan (monthly)",
                                 unit_price=Decimal("9.99"), amount=Decimal("9.99"), total=Decimal("9.99"),
                                 period_start=date(2030, 1, 1), period_end=date(2030, 1, 31))
                     for inv in invs]  # fmt: skip
            InvoiceLine.all_tenants.bulk_create(lines)
            SubscriptionCharge.all_tenants.bulk_create([
                SubscriptionCharge(tenant_id=tenant_id, subscription_id=s, kind="proration", amount=Decimal("9.99"),
                                   period_start=date(2030, 1, 1), period_end=date(2030, 2, 1), description="floor",
                                   invoice_line=line)
                for (s, _c), line in zip(chunk, lines, strict=True)])  # fmt: skip
            AuditEvent.objects.bulk_create([
                AuditEvent(tenant_id=tenant_id, action=action, object_type="billing.invoice", object_id=str(inv.pk),
                           changes={"status": [None, "open"]})
                for inv in invs for action in ("invoice.create", "invoice.issue", "billing.run.invoice")])  # fmt: skip
    floor = len(subs) / (time.perf_counter() - started)
    result.update(floor_invoices_per_second=round(floor, 1),
                  ratio_to_bulk_insert=ratio(result["invoices_per_second"] or 0, floor))  # fmt: skip
    return result


def main() -> None:
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"] or not settings.REDIS_URL:
        sys.exit("make bench needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL)")
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    results: dict = {"machine": machine()}
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))  # e.g. BENCH_ONLY=billing_run
    if not only or "list" in only:
        say("list")
        results["list"] = bench_list(env_int("BENCH_HTTP_SECONDS", 10))
    if not only or "jobs" in only:
        say("jobs")
        results["jobs"] = bench_jobs(env_int("BENCH_JOBS", 2000))
    if not only or "webhooks" in only:
        say("webhooks")
        results["webhooks"] = bench_webhooks(env_int("BENCH_WEBHOOKS", 2000))
    if not only or "billing_run" in only:
        results["billing_run"] = bench_billing(env_int("BENCH_SUBSCRIPTIONS", 100_000))
    if not only or "backups" in only:
        say("backups")
        from bench import backups

        results["backups"] = backups.run()
    if not only or "ssl" in only:
        say("ssl")
        from bench import certificates

        results["ssl"] = certificates.run()
    if not only or "metrics" in only:
        say("metrics")
        from bench import metrics

        results["metrics"] = metrics.run()
    results["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["bench_seconds"] = round(time.perf_counter() - started)
    print_table(results)
    out = Path(os.environ.get("BENCH_OUT") or Path(settings.VAR_DIR) / "bench.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing.update(results)
    out.write_text(json.dumps(existing, indent=2))
    print(f"written to {out}")


ROWS = [
    ("list", "tenant-scoped list of 50 (req/s)", "api_rps", "bare DRF ListAPIView", "bare_drf_rps",
     "ratio_to_bare_drf"),
    ("list", "", "api_rps", "plain view, fixed JSON", "fixed_json_rps", "ratio_to_fixed_json"),
    ("list", "same, ?page_mode=cursor", "api_cursor_rps", "bare DRF ListAPIView", "bare_drf_rps",
     "cursor_ratio_to_bare_drf"),
    ("jobs", "no-op job via worker (jobs/s)", "jobs_per_second", "bare no-op Celery task", "bare_tasks_per_second",
     "ratio_to_bare_task"),
    ("webhooks", "webhook answered (events/s)", "events_per_second", "verify + store row",
     "floor_events_per_second", "ratio_to_floor"),
    ("webhooks", "webhook applied, end to end", "applied_per_second", "verify + store row",
     "floor_events_per_second", "applied_ratio_to_floor"),
    ("billing_run", "billing run (invoices/s)", "invoices_per_second", "bulk insert of same rows",
     "floor_invoices_per_second", "ratio_to_bulk_insert"),
    ("ssl", "POST issue to served cert (s)", "issue_to_served_seconds", "bare acme issuance",
     "bare_acme_seconds", "ratio_to_bare_acme"),
]  # fmt: skip


def print_table(results: dict) -> None:
    m = results["machine"]
    print(f"\nmPanel benchmarks on {m['cpu']}, {m['nproc']} CPUs, {m['ram_gib']} GiB RAM, load average "
          f"{m['loadavg_1m_at_start']} at start ({results['bench_seconds']} s)")  # fmt: skip
    print(f"{'measure':<34} {'value':>10}   {'floor':<26} {'floor value':>11}   {'ratio':>6}")
    for section, label, key, floor_label, floor_key, ratio_key in ROWS:
        r = results.get(section) or {}
        print(f"{label:<34} {r.get(key, '-'):>10}   {floor_label:<26} {r.get(floor_key, '-'):>11}   "
              f"{r.get(ratio_key, '-'):>6}")  # fmt: skip
    if lst := results.get("list"):
        print(
            f"queries per request: api {lst['api_queries']} (cursor {lst['api_cursor_queries']}), "
            f"bare DRF {lst['bare_drf_queries']}, "
            f"fixed JSON {lst['fixed_json_queries']}   (list over {lst['rows']} rows, {lst['tenants']} tenants)"
        )
    if b := results.get("billing_run"):
        print(f"billing run: {b['invoices']} invoices from {b['subscriptions']} subscriptions in {b['seconds']} s; "
              f"second run {b['second_run_invoices']} invoices in {b['second_run_seconds']} s")  # fmt: skip
    if "metrics" in results:
        print("metrics:", json.dumps(results["metrics"]))
    if "backups" in results:
        print("backups:", json.dumps(results["backups"]))


if __name__ == "__main__":
    main()
