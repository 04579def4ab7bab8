"""The cloudpod.* job handlers. Each one reads the pod's wanted state and converges the node."""

from __future__ import annotations

from apps.jobs.registry import handler

from . import services
from .models import CloudPod, PodStatus


def _converge(pod: CloudPod, job_type: str) -> dict:
    return services.pod_converge(pod=pod, job_type=job_type)


@handler("cloudpod.provision")
@handler("cloudpod.resize")
@handler("cloudpod.suspend")
@handler("cloudpod.resume")
@handler("cloudpod.restart")
@handler("cloudpod.delete")
def converge(job) -> dict:
    # Visible progress first (pending → provisioning); a pod that moved on meanwhile is left alone.
    return services.pods.run_job(job, _converge, progress=(PodStatus.PENDING, PodStatus.PROVISIONING))
