"""``make bench``: backup throughput of a website through the panel's job, next to a bare
``restic backup`` of the same tree (the floor), and a second, unchanged backup (deduplication).

Runs inside bench/suite.py's Django (PostgreSQL); needs Debian's restic. A site of
``BENCH_BACKUP_MB`` (200) MB of incompressible files is written on the local node, backed up through
``snapshot_create`` and its ``backup.snapshot.run`` job (``apps.jobs.services.run_job``: the same path
as a worker's), then with ``restic backup`` alone into a fresh repository. Prints figures; never
passes or fails on time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

MB = 1024 * 1024


def _write_tree(root: Path, megabytes: int) -> None:
    public = root / "public"
    public.mkdir(parents=True, exist_ok=True)
    for i in range(megabytes):  # 1 MiB files, random: no compression or deduplication helps
        (public / f"f{i:04d}.bin").write_bytes(os.urandom(MB))


def _through_the_job(tenant, repo, site) -> float:
    from apps.backups import services
    from apps.backups.models import Snapshot
    from apps.jobs.models import Job
    from apps.jobs.services import run_job
    from apps.tenancy.scoping import tenant_scope

    with tenant_scope(tenant):
        t0 = time.perf_counter()
        snap = services.snapshot_create(tenant=tenant, repository=repo, resource_kind="website", resource_id=site.pk)
        job = Job.all_tenants.filter(type="backup.snapshot.run", payload__snapshot=str(snap.pk)).get()
        run_job(job.pk)
        seconds = time.perf_counter() - t0
        snap = Snapshot.all_tenants.get(pk=snap.pk)
        assert snap.status == "done", snap.last_error
    return seconds


def run() -> dict:
    if shutil.which("restic") is None:
        return {"skipped": "restic is not installed"}
    from apps.backups import services
    from apps.backups.models import BackupRepository
    from apps.nodes.drivers import local_root
    from apps.nodes.models import Node
    from apps.tenancy.models import Tenant
    from apps.tenancy.scoping import tenant_scope
    from apps.websites.models import Website

    megabytes = int(os.environ.get("BENCH_BACKUP_MB", "200"))
    tenant = Tenant.objects.create(name=f"Bench backups {time.time_ns()}")
    with tenant_scope(tenant):
        node = Node.objects.create(tenant=tenant, hostname=f"bench-backup-{tenant.pk.hex[:8]}", roles=["web", "backup"],
                                   vcpu=8, memory_mb=8192, disk_gb=100, max_pods=0)  # fmt: skip
        site = Website.objects.create(tenant=tenant, node=node, primary_domain=f"b{tenant.pk.hex[:12]}.example.com",
                                      site_id=f"w{uuid.uuid4().hex}", status="active")  # fmt: skip
        repo = services.repository_create(tenant=tenant, name="bench", node=node)
        BackupRepository.all_tenants.filter(pk=repo.pk).update(status="active")  # init happens on first use
        repo.refresh_from_db()
    tree = local_root() / "web" / "www" / site.site_id
    floor_repo = Path(tempfile.mkdtemp(prefix="mpanel-bench-restic-"))
    try:
        _write_tree(tree, megabytes)
        first = _through_the_job(tenant, repo, site)
        second = _through_the_job(tenant, repo, site)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RESTIC_PASSWORD": "bench-only-password",
               "RESTIC_REPOSITORY": str(floor_repo / "r"), "RESTIC_CACHE_DIR": str(floor_repo / "cache")}  # fmt: skip
        subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
        t0 = time.perf_counter()
        subprocess.run(["restic", "backup", "--quiet", "."], env=env, cwd=tree, check=True, capture_output=True)
        floor = time.perf_counter() - t0
    finally:
        shutil.rmtree(tree, ignore_errors=True)
        shutil.rmtree(floor_repo, ignore_errors=True)
        shutil.rmtree(local_root() / "backups" / "repos" / repo.restic_name, ignore_errors=True)
    return {
        "megabytes": megabytes,
        "job_seconds": round(first, 2),
        "job_mb_per_second": round(megabytes / first, 1),
        "bare_restic_seconds": round(floor, 2),
        "bare_restic_mb_per_second": round(megabytes / floor, 1),
        "unchanged_second_backup_seconds": round(second, 2),
    }
