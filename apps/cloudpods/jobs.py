"""The cloudpod.* job handlers. Each one reads the pod's wanted state and converges the node."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from apps.jobs.errors import tenant_message
from apps.jobs.registry import PermanentError, handler
from apps.nodes.drivers import NodeError

from . import locks, services
from .models import CloudPod, PodStatus


def converge(job) -> dict:
    pod_id = job.payload.get("pod")
    if not pod_id or not CloudPod.objects.filter(pk=pod_id).exists():
        raise PermanentError(f"No pod {pod_id!r} in this tenant.")
    # Visible progress; a pod that moved on meanwhile (deleting) is left alone.
    CloudPod.objects.filter(pk=pod_id, status=PodStatus.PENDING).update(
        status=PodStatus.PROVISIONING, updated_at=timezone.now()
    )
    try:
        with transaction.atomic():
            pod = locks.pod(pod_id)
            return services.pod_converge(pod=pod, job_type=job.type)
    except NodeError as exc:
        if exc.permanent or job.attempts >= job.max_attempts:
            services.pod_fail(pod_id=pod_id, error=exc.message)
            raise PermanentError(exc.message) from exc
        raise
    except Exception as exc:
        if job.attempts >= job.max_attempts:
            services.pod_fail(pod_id=pod_id, error=tenant_message(exc))
        raise


for _type in ("cloudpod.provision", "cloudpod.resize", "cloudpod.suspend", "cloudpod.resume", "cloudpod.delete"):
    handler(_type)(converge)
