"""Operators create and act on hosting objects from the admin, through the same services as the API:
the add and change pages, the buttons on an object's page (each permission-checked), the audit trail
marked via="operator", and the node really doing the work (runc, nginx)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from agent.runtime import NodeRuntime
from apps.audit.models import AuditEvent
from apps.cloudpods.models import CloudPod, PodStatus

from .conftest import PASSWORD, admin_login
from .pods_support import freezer_state, node_in, node_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, db):
    user = get_user_model().objects.create_superuser("operator@mpanel.test", PASSWORD)
    admin_login(client, user)
    client.user = user
    return client


def url(model, view, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def act_url(obj, name) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_object_action", args=[obj.pk, name])


def audited(action: str, obj) -> AuditEvent:
    event = AuditEvent.objects.filter(action=action, object_id=str(obj.pk)).latest("created_at")
    assert event.via == "operator", (action, event.via)
    return event


def errors(response) -> str:
    if response.context and "adminform" in response.context:
        return str(response.context["adminform"].form.errors)
    return response.content.decode()[-2000:]


def test_operator_creates_a_pod_that_runs_then_suspends_and_resumes_it(
    operator,
    tenant_a,
    node_root,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    node = node_in(tenant_a, "pods-1", memory_mb=4096)
    page = operator.get(url(CloudPod, "add") + f"?tenant={tenant_a.tenant.pk}")
    assert page.status_code == 200
    assert "pods-1" in page.content.decode() and "Automatic placement" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        data = {
            "tenant": tenant_a.tenant.pk,
            "name": "Admin-Pod",
            "plan": "pod-xs",
            "image": "busybox",
            "node": node.pk,
        }
        response = operator.post(url(CloudPod, "add"), data)
    assert response.status_code == 302, errors(response)
    pod = CloudPod.all_tenants.get(name="admin-pod")
    assert pod.node_id == node.pk and pod.status == PodStatus.RUNNING, pod.last_error
    assert audited("cloudpod.create", pod).actor_id == operator.user.pk
    runtime = NodeRuntime(node_root)
    state = runtime.pod_state(pod.container_id)
    assert state["state"] == "running"

    page = operator.get(url(CloudPod, "change", pod.pk)).content.decode()
    assert act_url(pod, "suspend") in page and act_url(pod, "resume") not in page
    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(act_url(pod, "suspend")).status_code == 302
    pod.refresh_from_db()
    assert pod.status == PodStatus.SUSPENDED
    assert runtime.pod_state(pod.container_id)["state"] == "paused"
    assert freezer_state(state["pid"]) == "FROZEN"
    audited("cloudpod.suspend", pod)

    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(act_url(pod, "resume")).status_code == 302
    pod.refresh_from_db()
    assert pod.status == PodStatus.RUNNING and runtime.pod_state(pod.container_id)["state"] == "running"
    audited("cloudpod.resume", pod)

    # Deleting asks first; the answer "yes" calls the service.
    asked = operator.post(act_url(pod, "delete"))
    assert asked.status_code == 200 and "Are you sure?" in asked.content.decode()
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.RUNNING
    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(act_url(pod, "delete"), {"confirmed": "yes"}).status_code == 302
    pod.refresh_from_db()
    assert pod.status == PodStatus.DELETED
    assert runtime.pod_state(pod.container_id)["state"] == "absent"
