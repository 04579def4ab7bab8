"""A CloudPod plan sold through billing: the subscription's jobs drive its pod.

``subscription.activate`` makes the pod (which enqueues ``cloudpod.provision``), ``suspend`` and
``resume`` freeze and thaw it, ``cancel`` deletes it. Each step reads the pod's state first, so a
job that runs twice does it once; a pod in a state that cannot take the step yet (still
provisioning) makes the job fail and retry later.
"""

from __future__ import annotations

from apps.billing.services.subscriptions import register_provisioner
from apps.jobs.registry import PermanentError

from . import services
from .models import CloudPod, PodStatus

LIVE = [s for s in PodStatus.values if s not in (PodStatus.DELETING, PodStatus.DELETED)]


def _pod_of(sub) -> CloudPod | None:
    return CloudPod.objects.filter(subscription=str(sub.pk), status__in=LIVE).first()


def activate(sub) -> dict:
    pod = _pod_of(sub)
    if pod is not None:
        return {"pod": str(pod.pk), "created": False}
    plan = (sub.product.config or {}).get("plan")
    if not plan:
        raise PermanentError(f"The product {sub.product.name!r} names no CloudPod plan (config.plan).")
    name = (sub.config or {}).get("name") or f"pod-{str(sub.pk)[:8]}"
    pod = services.pod_create(tenant=sub.tenant, name=name, plan=plan, image=(sub.config or {}).get("image"),
                              subscription=str(sub.pk))  # fmt: skip
    return {"pod": str(pod.pk), "created": True}


def suspend(sub) -> dict:
    pod = _pod_of(sub)
    if pod is None or pod.status == PodStatus.SUSPENDED:
        return {"pod": str(pod.pk) if pod else None, "changed": False}
    services.pod_suspend(pod=pod)  # a pod still provisioning is a 409 here: the job retries later
    return {"pod": str(pod.pk), "changed": True}


def resume(sub) -> dict:
    pod = _pod_of(sub)
    if pod is None or pod.status != PodStatus.SUSPENDED:
        return {"pod": str(pod.pk) if pod else None, "changed": False}
    services.pod_resume(pod=pod)
    return {"pod": str(pod.pk), "changed": True}


def cancel(sub) -> dict:
    pod = _pod_of(sub)
    if pod is None:
        return {"pod": None, "changed": False}
    services.pod_delete(pod=pod)
    return {"pod": str(pod.pk), "changed": True}


register_provisioner("cloudpod_plan", activate=activate, suspend=suspend, resume=resume, cancel=cancel)
