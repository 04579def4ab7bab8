"""``make bench``: how long from the API call to a running container, next to a bare ``runc run``.

Runs on the embedded default (SQLite, jobs in-process after commit) in a throwaway var dir, with a
local node, so it needs only runc and busybox-static. Prints figures; never passes or fails on time.

    API call → container running   POST /api/v1/cloudpods/ until GET shows runtime.state == running
    node side only                  agent.runtime pod_create (overlay rootfs, runc spec, runc run -d)
    bare runc run (the floor)       runc run -d of a ready bundle
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N = int(os.environ.get("BENCH_PODS", "20"))
ROOT = Path(__file__).resolve().parent.parent


def figures(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = statistics.quantiles(ms, n=20)[18] if len(ms) >= 2 else ms[0]
    return f"{name:<34} median {statistics.median(ms):8.1f} ms   p95 {p95:8.1f} ms   (n={len(ms)})"


def main() -> int:
    var = Path(tempfile.mkdtemp(prefix="mpanel-bench-"))
    os.environ.update(
        MPANEL_VAR_DIR=str(var),
        DJANGO_SETTINGS_MODULE="mpanel.settings",
        LOG_LEVEL="WARNING",
        MPANEL_ENVIRONMENT="test",
    )
    for key in ("DATABASE_URL", "REDIS_URL", "MPANEL_NODE_ROOT", "MPANEL_JOBS_EAGER"):
        os.environ.pop(key, None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from agent import rootfs
    from agent.runtime import NodeRuntime, PodSpec
    from apps.accounts.models import AuthToken
    from apps.nodes.models import Node
    from apps.tenancy.models import Membership, Tenant
    from apps.tenancy.roles import Role
    from apps.tenancy.scoping import tenant_scope

    runtime = NodeRuntime(settings.MPANEL_NODE_ROOT)
    try:
        call_command("migrate", verbosity=0)
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user("bench@mpanel.local", "bench-password-123")
        tenant = Tenant.objects.create(name="Bench")
        Membership.objects.create(tenant=tenant, user=user, role=Role.OWNER)
        with tenant_scope(tenant):
            Node.objects.create(
                tenant=tenant,
                hostname="local",
                roles=["pods"],
                vcpu=1000,
                memory_mb=10**6,
                disk_gb=10**5,
                max_pods=1000,
            )
        _token, raw = AuthToken.issue(user=user, ttl=settings.MPANEL_TOKEN_TTL)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

        def api_pod(i: int) -> float:
            t0 = time.perf_counter()
            created = client.post("/api/v1/cloudpods/", {"name": f"bench-{i}", "plan": "pod-xs"}, format="json")
            assert created.status_code == 201, created.content
            pod_id = created.json()["id"]
            while client.get(f"/api/v1/cloudpods/{pod_id}/").json()["runtime"]["state"] != "running":
                time.sleep(0.002)
            return time.perf_counter() - t0

        def node_pod(i: int) -> float:
            spec = PodSpec(id=f"bench-node-{i}", memory_mb=128, vcpu=0.5, pids=64)
            t0 = time.perf_counter()
            runtime.pod_create(spec)
            return time.perf_counter() - t0

        def floor_run(i: int) -> float:
            t0 = time.perf_counter()
            subprocess.run(
                ["runc", "--root", str(runtime.state_dir), "run", "-d", "--bundle", str(bundle), f"bench-floor-{i}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )
            return time.perf_counter() - t0

        # The first pod builds the image (and compiles what the API uses): reported on its own.
        first = api_pod(0)
        node_pod(0)
        bundle = runtime.bundle_dir("bench-node-0")
        # One of each in turn (the order turned by one each time) rather than N of each in a row: on a
        # shared machine a burst of load then meets all three instead of the one being measured.
        samples: dict[str, list[float]] = {"api": [], "node": [], "floor": []}
        ways = [("api", api_pod), ("node", node_pod), ("floor", floor_run)]
        for i in range(1, N + 1):
            for name, way in ways[i % 3 :] + ways[: i % 3]:
                samples[name].append(way(i))
        api, node_side, floor = samples["api"], samples["node"], samples["floor"]
        print(f"CloudPods, {N} pods each (plan pod-xs, image busybox, local node, embedded default):")
        print(figures("API call -> container running", api))
        print(figures("node side only (pod_create)", node_side))
        print(figures("bare runc run -d (the floor)", floor))
        print(f"API / floor {statistics.median(api) / statistics.median(floor):.2f}x, node side / floor "
              f"{statistics.median(node_side) / statistics.median(floor):.2f}x (medians); the first pod, which "
              f"builds the image, {first * 1000:.1f} ms")  # fmt: skip
    finally:
        for container in runtime.pod_list():
            subprocess.run(["runc", "--root", str(runtime.state_dir), "delete", "-f", container["id"]], check=False)
        rootfs.unmount_under(var)  # the pods' overlay roots
        shutil.rmtree(var, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
