"""CloudPods end to end: the API, a real Celery worker, and real runc containers on this machine.

The container's memory limit is read back from its own memory cgroup, the freezer state from its
freezer cgroup: the node is checked directly, not through the panel's own reports.
"""

from __future__ import annotations

import os
import threading

import pytest
from django.db import connection

from agent.runtime import PAUSE_AFTER_CREATE_ENV, NodeRuntime
from apps.cloudpods.models import CloudPod, PodStatus
from apps.jobs import services as job_services
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.nodes.models import Node
from apps.tenancy.roles import Role
from tests.conftest import client_for, wait_for
from tests.kernel.test_jobs_worker import TunedWorker
from tests.pods_support import freezer_state, memory_cgroup_limit, node_in, node_root  # noqa: F401

pytestmark = pytest.mark.worker
MB = 1024 * 1024
TIMEOUT = 30.0


def pod_url(pod_id, action=None) -> str:
    return f"/api/v1/cloudpods/{pod_id}/{action}/" if action else f"/api/v1/cloudpods/{pod_id}/"


def wait_status(client, pod_id, status, timeout=TIMEOUT) -> dict:
    def check():
        body = client.get(pod_url(pod_id)).json()
        return body if body["status"] == status else None

    return wait_for(check, timeout=timeout, message=f"pod {pod_id} to be {status}")


def wait_runtime(client, pod_id, state, timeout=TIMEOUT) -> dict:
    def check():
        body = client.get(pod_url(pod_id)).json()
        return body if body["runtime"]["state"] == state else None

    return wait_for(check, timeout=timeout, message=f"pod {pod_id} runtime to be {state}")


def container_pid(root, container_id) -> int:
    state = NodeRuntime(root).pod_state(container_id)
    assert state["state"] in ("running", "paused"), state
    return state["pid"]


def test_pod_lifecycle_on_runc(node_root, celery_worker, tenant_a):  # noqa: F811
    node = node_in(tenant_a, memory_mb=4096)
    client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)

    created = client.post("/api/v1/cloudpods/", {"name": "web", "plan": "pod-xs"}, format="json")
    assert created.status_code == 201, created.content
    pod_id = created.json()["id"]
    body = wait_status(client, pod_id, "running")
    container_id = body["container_id"]
    assert body["runtime"]["state"] == "running"
    assert body["runtime"]["memory_limit_bytes"] == 128 * MB
    assert body["runtime"]["pids"] >= 1 and body["runtime"]["cpu_seconds"] is not None
    pid = container_pid(node_root, container_id)
    assert memory_cgroup_limit(pid) == 128 * MB  # from the container's own cgroup
    bundle = node_root / "bundles" / container_id
    assert (bundle / "rootfs" / "bin" / "busybox").exists() and (bundle / "config.json").exists()

    # Resize: runc update, read back from the cgroup.
    assert client.post(pod_url(pod_id, "resize"), {"plan": "pod-s"}, format="json").status_code == 202
    body = wait_status(client, pod_id, "running")
    assert body["memory_mb"] == 256
    assert memory_cgroup_limit(container_pid(node_root, container_id)) == 256 * MB
    assert body["runtime"]["memory_limit_bytes"] == 256 * MB
    assert container_pid(node_root, container_id) == pid  # the same container, updated in place

    # Suspend: frozen.
    assert client.post(pod_url(pod_id, "suspend")).status_code == 202
    body = wait_runtime(client, pod_id, "paused")
    assert body["status"] == "suspended"
    assert freezer_state(pid) == "FROZEN"
    assert client.post(pod_url(pod_id, "suspend")).status_code == 409

    # Resume: thawed.
    assert client.post(pod_url(pod_id, "resume")).status_code == 202
    body = wait_runtime(client, pod_id, "running")
    assert body["status"] == "running"
    assert freezer_state(pid) == "THAWED"

    # Delete: no container, no rootfs, capacity freed.
    assert client.delete(pod_url(pod_id)).status_code == 202
    body = wait_status(client, pod_id, "deleted")
    assert body["runtime"]["state"] == "absent" and body["deleted_at"]
    assert NodeRuntime(node_root).pod_state(container_id)["state"] == "absent"
    assert NodeRuntime(node_root).pod_list() == []
    assert not bundle.exists()
    node = Node.all_tenants.get(pk=node.pk)
    assert (node.allocated_pods, node.allocated_memory_mb, node.allocated_disk_gb, float(node.allocated_vcpu)) == (
        0,
        0,
        0,
        0.0,
    )
    assert client.post(pod_url(pod_id, "resume")).status_code == 409
    assert client.delete(pod_url(pod_id)).status_code == 409

    jobs = list(Job.all_tenants.order_by("created_at").values_list("type", "status"))
    assert jobs == [
        ("cloudpod.provision", JobStatus.SUCCEEDED),
        ("cloudpod.resize", JobStatus.SUCCEEDED),
        ("cloudpod.suspend", JobStatus.SUCCEEDED),
        ("cloudpod.resume", JobStatus.SUCCEEDED),
        ("cloudpod.delete", JobStatus.SUCCEEDED),
    ]
    # The name of a deleted pod can be used again.
    again = client.post("/api/v1/cloudpods/", {"name": "web", "plan": "pod-xs"}, format="json")
    assert again.status_code == 201
    wait_status(client, again.json()["id"], "running")


def test_a_job_that_cannot_succeed_puts_the_pod_in_error(node_root, celery_worker, tenant_a, settings):  # noqa: F811
    settings.CLOUDPOD_IMAGES = {**settings.CLOUDPOD_IMAGES, "nonexistent": {"description": "not on any node"}}
    node_in(tenant_a)
    client = client_for(tenant_a.owner, tenant_a.tenant)
    created = client.post(
        "/api/v1/cloudpods/", {"name": "bad", "plan": "pod-xs", "image": "nonexistent"}, format="json"
    )
    assert created.status_code == 201
    body = wait_status(client, created.json()["id"], "error")
    assert "unknown image" in body["last_error"]
    assert Job.all_tenants.get().status == JobStatus.FAILED
    # An errored pod can still be deleted, and that frees its capacity.
    assert client.delete(pod_url(body["id"])).status_code == 202
    wait_status(client, body["id"], "deleted")
    assert Node.all_tenants.get().allocated_pods == 0


@pytest.fixture
def slow_create(monkeypatch):
    """Workers started after this sleep 4 s after ``runc run`` succeeded, before they report it."""
    monkeypatch.setenv(PAUSE_AFTER_CREATE_ENV, "4")


def test_worker_killed_mid_provision_leaves_exactly_one_container(
    node_root,  # noqa: F811
    slow_create,
    celery_worker,
    tenant_a,
    settings,
    tmp_path,
):
    node_in(tenant_a)
    client = client_for(tenant_a.owner, tenant_a.tenant)
    created = client.post("/api/v1/cloudpods/", {"name": "crash", "plan": "pod-xs"}, format="json")
    pod = CloudPod.all_tenants.get(pk=created.json()["id"])
    runtime = NodeRuntime(node_root)
    # The container runs on the node, but the worker has not reported it yet.
    wait_for(lambda: runtime.pod_state(pod.container_id)["state"] == "running", message="the container to start")
    job = Job.all_tenants.get(type="cloudpod.provision")
    assert job.status == JobStatus.RUNNING
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.PROVISIONING

    celery_worker.kill()
    assert Job.all_tenants.get(pk=job.pk).status == JobStatus.RUNNING

    settings.MPANEL_JOB_HEARTBEAT_TIMEOUT = 3
    second = TunedWorker(
        celery_worker.db_name,
        tmp_path / "worker-2.log",
        celery_worker.queue,
        env={"MPANEL_JOB_HEARTBEAT_TIMEOUT": "3", PAUSE_AFTER_CREATE_ENV: "0"},
    )
    try:
        second.start()

        def sweep_until_done():
            job_services.sweep()
            return Job.all_tenants.get(pk=job.pk).status == JobStatus.SUCCEEDED

        wait_for(sweep_until_done, timeout=TIMEOUT, interval=0.5, message="the provision to be recovered")
    finally:
        second.stop()

    job = Job.all_tenants.get(pk=job.pk)
    assert list(JobAttempt.objects.filter(job=job).order_by("number").values_list("outcome", flat=True)) == [
        "lost",
        "succeeded",
    ]
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.RUNNING
    containers = runtime.pod_list()
    assert [c["id"] for c in containers] == [pod.container_id], containers
    assert containers[0]["state"] == "running"


def test_parallel_creates_never_overcommit_a_node(transactional_db, tenant_a, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL (row locks): run it with `make test`")
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    node = node_in(tenant_a, max_pods=10)
    clients = [client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant) for _ in range(20)]
    barrier = threading.Barrier(20)
    answers: list[int] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            response = clients[i].post("/api/v1/cloudpods/", {"name": f"p{i}", "plan": "pod-xs"}, format="json")
            with lock:
                answers.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(answers) == [201] * 10 + [409] * 10
    node = Node.all_tenants.get(pk=node.pk)
    assert node.allocated_pods == 10 and node.allocated_memory_mb == 10 * 128
    assert CloudPod.all_tenants.count() == 10
    assert Job.all_tenants.filter(type="cloudpod.provision").count() == 10
    assert os.environ.get(PAUSE_AFTER_CREATE_ENV) in (None, "", "0")
