"""`make load`: a mixed workload against gunicorn on loopback, from wrk in a second process.

Runs on the throwaway PostgreSQL and Redis of scripts/test.sh (MPANEL_LOAD=1), with a real Celery
worker for the jobs. LOAD_SECONDS (default 600) of, per 20 requests:

    12 reads   lists and details across roles (MEMBER customers, BILLING invoices and payments,
               ADMIN audit and guardian findings, OWNER jobs)
     3 creates POST /api/v1/customers/ (BILLING), unique names and emails
     1 job     POST /api/v1/guardian/scan/ (ADMIN): a job through the outbox to the worker
     4 webhooks signed generic payment.succeeded deliveries (0.01 EUR each to one of 20 invoices;
               signed before the soak, repeated once all were sent: a repeat is answered once-stored)

Prints requests/s, p50/p95/p99 latency, the error count (socket errors and any non-2xx answer), and the
RSS of the gunicorn workers at the start and end of the soak. Fails when there was any error, a job
failed, or a webhook delivery was applied other than exactly once. LOAD_CONNECTIONS (default 4) wrk
connections, gunicorn with 2 sync workers.

The scale-out check (issue 21): LOAD_WEB (default 1) separate gunicorn servers, each with 2 sync workers
(two web machines, in the production shape), and LOAD_WORKERS (default 1) separate Celery workers, all on
the one PostgreSQL and the one Redis. The connections are split over the servers, one wrk each, all at
once (what a load balancer does); the same deliveries go to every server, so repeats arrive at other
processes. Requests/s and errors are summed, latency percentiles are the worst server's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SECONDS = int(os.environ.get("LOAD_SECONDS", "600"))
WEB = max(1, int(os.environ.get("LOAD_WEB", "1")))
WORKERS = max(1, int(os.environ.get("LOAD_WORKERS", "1")))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
os.environ["MPANEL_JOBS_EAGER"] = "0"
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["BENCH_WEBHOOK_TOLERANCE"] = str(SECONDS + 900)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db.models import Count  # noqa: E402

from bench.server import Gunicorn, machine, stop_group, wrk  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="mpanel-load-"))


def seed() -> dict:
    from apps.accounts.models import AuthToken, User
    from apps.billing.services import invoices
    from apps.customers.models import Customer
    from apps.tenancy.models import Membership, Tenant
    from apps.tenancy.roles import Role
    from apps.tenancy.scoping import tenant_scope

    tenant = Tenant.objects.create(name="Load tenant")
    tokens = {}
    for role in (Role.OWNER, Role.ADMIN, Role.BILLING, Role.MEMBER):
        user = User.objects.create_user(f"load-{role}@mpanel.local", "load-password-123")
        Membership.objects.create(tenant=tenant, user=user, role=role)
        tokens[role.value.lower()] = AuthToken.issue(user=user, ttl=settings.MPANEL_TOKEN_TTL)[1]
    with tenant_scope(tenant):
        customers = Customer.objects.bulk_create(
            [Customer(tenant=tenant, name=f"Seed {i}", email=f"seed{i}@load.example", currency="EUR")
             for i in range(500)]
        )  # fmt: skip
        bills = []
        for customer in customers[:20]:
            draft = invoices.invoice_create(tenant=tenant, customer=customer, currency="EUR", lines=[
                {"description": "Prepaid credit", "quantity": 1, "unit_price": Decimal(1_000_000)}])  # fmt: skip
            bills.append(invoices.invoice_issue(invoice=draft))
    return {"tenant": tenant, "tokens": tokens, "customers": customers, "invoices": bills}


def lua_script(data: dict, webhooks: list[tuple[str, str]]) -> str:
    tenant = str(data["tenant"].pk)
    headers = {
        role: {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant, "Content-Type": "application/json"}
        for role, token in data["tokens"].items()
    }
    reads = reads_of(data)
    return _lua(headers, reads, webhooks)


def reads_of(data: dict) -> list[tuple[str, str]]:
    c, inv = data["customers"], data["invoices"]
    return [
        ("member", "/api/v1/customers/"), ("member", f"/api/v1/customers/{c[1].pk}/"),
        ("member", "/api/v1/customers/?search=Seed%201"), ("member", f"/api/v1/customers/{c[2].pk}/"),
        ("billing", "/api/v1/billing/invoices/"), ("billing", f"/api/v1/billing/invoices/{inv[0].pk}/"),
        ("billing", "/api/v1/billing/payments/"), ("billing", f"/api/v1/customers/{c[3].pk}/"),
        ("admin", "/api/v1/audit/"), ("admin", "/api/v1/guardian/"),
        ("owner", "/api/v1/ops/provisioning/"), ("owner", "/api/v1/billing/invoices/?status=open"),
    ]  # fmt: skip


def requests_of(data: dict, webhook: tuple[str, str]) -> list[tuple]:
    """One request of each kind the soak sends: (method, role, path, body, extra headers)."""
    out = [("GET", role, path, "", {}) for role, path in reads_of(data)]
    out.append(
        (
            "POST",
            "billing",
            "/api/v1/customers/",
            json.dumps({"name": "Pre-flight", "email": f"preflight-{time.time_ns()}@load.example", "currency": "EUR"}),
            {},
        )
    )
    out.append(("POST", "admin", "/api/v1/guardian/scan/", "", {}))
    out.append(("POST", "", "/api/v1/billing/webhooks/generic", webhook[0], {"X-Mpanel-Signature": webhook[1]}))
    return out  # fmt: skip


def _lua(headers: dict, reads: list, webhooks: list) -> str:
    def lua_str(s: str) -> str:
        return json.dumps(s)  # a JSON string literal is a valid Lua string literal here (ASCII, no newlines)

    lines = ["local H = {}", f"local RUN = {lua_str(str(time.time_ns()))}"]
    for role, h in headers.items():
        lines.append(
            f"H[{lua_str(role)}] = {{" + ", ".join(f"[{lua_str(k)}] = {lua_str(v)}" for k, v in h.items()) + "}"
        )
    lines.append("local READS = {" + ", ".join(f"{{{lua_str(r)}, {lua_str(p)}}}" for r, p in reads) + "}")
    # Thousands of deliveries: read from a file (a table constructor that size exceeds LuaJIT's limits).
    hook_file = WORK / f"webhooks-{len(webhooks)}.tsv"
    hook_file.write_text("".join(f"{sig}\t{body}\n" for body, sig in webhooks))
    lines.append("local HOOKS = {}")
    lines.append(f"for line in io.lines({lua_str(str(hook_file))}) do")
    lines.append('  local tab = line:find("\\t", 1, true)')
    lines.append("  HOOKS[#HOOKS + 1] = {line:sub(tab + 1), line:sub(1, tab - 1)}")
    lines.append("end")
    lines.append('local HOOK_H = {["Content-Type"] = "application/json"}')
    lines.append(r"""
local n = 0
local threads = 0
setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
request = function()
  n = n + 1
  local k = n % 20
  if k < 12 then
    local r = READS[(n % #READS) + 1]
    return wrk.format("GET", r[2], H[r[1]])
  elseif k < 15 then
    local body = string.format('{"name": "Load %d-%d", "email": "load-%s-%d-%d@load.example", "currency": "EUR"}',
                               tid, n, RUN, tid, n)
    return wrk.format("POST", "/api/v1/customers/", H["billing"], body)
  elseif k == 15 then
    return wrk.format("POST", "/api/v1/guardian/scan/", H["admin"], "")
  else
    local i = ((math.floor(n / 20) * 4 + (k - 16)) * 7 + tid) % #HOOKS + 1
    HOOK_H["X-Mpanel-Signature"] = HOOKS[i][2]
    return wrk.format("POST", "/api/v1/billing/webhooks/generic", HOOK_H, HOOKS[i][1])
  end
end
""")
    return "\n".join(lines)


def signed_webhooks(invoices: list, count: int) -> list[tuple[str, str]]:
    from apps.billing.services.webhooks import sign_generic

    out = []
    for i in range(count):
        invoice = invoices[i % len(invoices)]
        body = json.dumps({"id": f"load-{i}", "type": "payment.succeeded", "data": {
            "invoice_id": str(invoice.pk), "amount": "0.01", "currency": "EUR", "reference": f"load-{i}"}})  # fmt: skip
        out.append((body, sign_generic(body.encode(), settings.MPANEL_GENERIC_WEBHOOK_SECRET)))
    return out


def preflight(server: Gunicorn, data: dict, webhooks: list) -> None:
    """Every request kind answers 2xx once before the soak, so errors counted later are the load's."""
    tenant = str(data["tenant"].pk)
    failures = []
    for method, role, path, body, extra in requests_of(data, webhooks[-1]):
        headers = {"Content-Type": "application/json", **extra}
        if role:
            headers |= {"Authorization": f"Bearer {data['tokens'][role]}", "X-Tenant-ID": tenant}
        req = urllib.request.Request(server.url + path, data=body.encode() if method == "POST" else None,  # noqa: S310
                                     headers=headers, method=method)  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310 - our loopback server
                response.read()
        except urllib.error.HTTPError as exc:
            failures.append(f"{method} {path} as {role or 'anonymous'}: {exc.code} {exc.read()[:300]!r}")
    if failures:
        raise SystemExit("pre-flight failed:\n" + "\n".join(failures))


def start_worker(n: int) -> subprocess.Popen:
    """One Celery worker process (one per machine in production), its own node name and log."""
    log = WORK / f"worker-{n}.log"
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.celery_bench", "worker", "--concurrency", "1", "--pool",
         "prefork", "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-n", f"load-{os.getpid()}-{n}@%h"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def rss_of(servers: list[Gunicorn]) -> dict:
    if len(servers) == 1:
        return servers[0].rss_mb()
    each = [server.rss_mb() for server in servers]
    return {"servers": each, "workers_total": round(sum(r["workers_total"] for r in each), 1)}


def combine(runs: list[dict]) -> dict:
    """One summary of several wrk runs at once: counts and rates summed, each percentile the worst."""
    if len(runs) == 1:
        return runs[0]
    errors = {kind: sum(r["errors"][kind] for r in runs) for kind in runs[0]["errors"]}
    return {
        "requests": sum(r["requests"] for r in runs),
        "requests_per_second": round(sum(r["requests_per_second"] for r in runs), 1),
        "latency_ms": {k: max(r["latency_ms"][k] for r in runs) for k in runs[0]["latency_ms"]},
        "errors": errors,
        "error_count": sum(r["error_count"] for r in runs),
    }


def exactly_once() -> dict:
    """Every delivery stored once and, once applied, one payment per delivery (its reference), whichever
    server received it and however many times, whichever worker applied it."""
    from apps.billing.models import Payment, WebhookEvent

    events = WebhookEvent.objects.filter(event_id__startswith="load-")
    stored = events.count()
    distinct = events.values("provider", "event_id").distinct().count()
    processed = events.filter(status=WebhookEvent.Status.PROCESSED).count()
    payments = Payment.all_tenants.filter(provider_ref__startswith="load-")
    paid, paid_distinct = payments.count(), payments.values("provider_ref").distinct().count()
    return {
        "events_stored": stored,
        "events_processed": processed,
        "payments": paid,
        "exactly_once": stored == distinct and paid == paid_distinct == processed,
    }


def main() -> int:
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"] or not settings.REDIS_URL:
        sys.exit("make load needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL)")
    call_command("migrate", verbosity=0)
    data = seed()
    hooks = signed_webhooks(data["invoices"], max(2000, SECONDS * 40))
    workers = [start_worker(n) for n in range(WORKERS)]
    servers = [Gunicorn(WORK) for _ in range(WEB)]
    try:
        for server in servers:
            server.start()
            preflight(server, data, hooks)
            wrk(server.url + "/api/v1/customers/", lua=lua_script(data, hooks[:5]), seconds=5, workdir=WORK)  # warm-up
        connections = int(os.environ.get("LOAD_CONNECTIONS", "4"))
        rss_start = rss_of(servers)
        box = machine()
        print(f"soak: {SECONDS} s, wrk -c{connections}, {WEB} gunicorn server(s) of 2 sync workers, "
              f"{WORKERS} Celery worker(s), RSS at start {rss_start}", flush=True)  # fmt: skip
        shares = [connections // WEB + (1 if n < connections % WEB else 0) for n in range(WEB)]
        with ThreadPoolExecutor(max_workers=WEB) as pool:
            runs = list(pool.map(
                lambda pair: wrk(pair[0].url, lua=lua_script(data, hooks), seconds=SECONDS,
                                 connections=max(1, pair[1]), workdir=WORK),
                zip(servers, shares, strict=True)))  # fmt: skip
        result = combine(runs)
        rss_end = rss_of(servers)
        from apps.billing.models import WebhookEvent
        from apps.jobs.models import Job

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            Job.all_tenants.filter(status__in=["PENDING", "RUNNING"]).exists()
            or WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).exists()
        ):
            time.sleep(1)
    finally:
        for server in servers:
            server.stop()
        for worker in workers:
            stop_group(worker)
    jobs = dict(Job.all_tenants.values_list("status").annotate(n=Count("id")).order_by())
    figures = {
        "machine": box,
        "seconds": SECONDS,
        "connections": connections,
        "requests": result["requests"],
        "requests_per_second": result["requests_per_second"],
        "latency_ms": result["latency_ms"],
        "errors": result["errors"],
        "error_count": result["error_count"],
        "gunicorn_rss_mb_start": rss_start,
        "gunicorn_rss_mb_end": rss_end,
        "jobs": jobs,
        "web_servers": WEB,
        "celery_workers": WORKERS,
        "webhooks": exactly_once(),
    }
    lat = result["latency_ms"]
    print(json.dumps(figures, indent=2))
    print(f"\nrequests/s {result['requests_per_second']}   p50 {lat['p50']} ms   p95 {lat['p95']} ms   "
          f"p99 {lat['p99']} ms   errors {result['error_count']}   gunicorn workers RSS "
          f"{rss_start['workers_total']} -> {rss_end['workers_total']} MiB   jobs {jobs}")  # fmt: skip
    out = Path(os.environ.get("LOAD_OUT") or Path(settings.VAR_DIR) / "load.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"written to {out}")
    if not figures["webhooks"]["exactly_once"]:
        print(f"FAILED: webhook deliveries not applied exactly once: {figures['webhooks']}", file=sys.stderr)
        return 1
    if result["error_count"] or jobs.get("FAILED"):
        print("FAILED: errors during the soak (see the figures above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
