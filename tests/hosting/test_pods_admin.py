"""The operators' console for nodes and pods: pages load, capacity bars, actions via the services."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.cloudpods.models import CloudPod, PodStatus
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.nodes.models import Node
from apps.tenancy.models import Tenant
from tests.conftest import PASSWORD, admin_login, make_tenant
from tests.pods_support import node_in, pod_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, db, monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    operator = get_user_model().objects.create_superuser("operator@mpanel.test", PASSWORD)
    admin_login(client, operator)
    client.operator = operator
    return client


def url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_pages_load_and_show_capacity(console, tenant_a):
    node = node_in(tenant_a, "bars.example.net", memory_mb=1000)
    pod = pod_in(tenant_a, 1, node=node)
    page = console.get(url(Node, "changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "bars.example.net" in html and "12%" in html  # 128 of 1000 MB
    assert "column-tenant" in html
    for model, obj in ((Node, node), (CloudPod, pod)):
        assert console.get(url(model, "changelist"), {"q": "x"}).status_code == 200
        assert console.get(url(model, "change", obj.pk)).status_code == 200
        shown = console.get(url(model, "changelist"), {"tenant__id__exact": str(tenant_a.tenant.pk)})
        assert obj.pk in [r.pk for r in shown.context["cl"].result_list]
    assert console.get(url(Node, "add")).status_code == 200
    assert console.get(url(CloudPod, "add")).status_code == 200  # made through the service (test_admin_hosting.py)


def test_node_edit_in_the_admin_is_audited(console, tenant_a):
    node = node_in(tenant_a, "edit.example.net")
    page = console.get(url(Node, "change", node.pk))
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data["roles"] = ["pods", "web"]
    data["max_pods"] = 42
    response = console.post(url(Node, "change", node.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert Node.all_tenants.get(pk=node.pk).max_pods == 42
    event = AuditEvent.objects.get(action="node.update", object_id=str(node.pk))
    assert event.actor_id == console.operator.pk


def test_suspend_and_resume_actions_go_through_the_services(console, tenant_a):
    running = pod_in(tenant_a, 1)
    deleted = pod_in(tenant_a, 2, status=PodStatus.DELETED)
    changelist = url(CloudPod, "changelist")
    response = console.post(
        changelist, {"action": "suspend_pods", "_selected_action": [str(running.pk), str(deleted.pk)]}, follow=True
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any("Suspending 1 pod" in m for m in messages) and any("Only a running pod" in m for m in messages)
    assert CloudPod.all_tenants.get(pk=running.pk).status == PodStatus.SUSPENDED
    assert Job.all_tenants.filter(type="cloudpod.suspend", object_id=str(running.pk)).count() == 1
    event = AuditEvent.objects.get(action="cloudpod.suspend", object_id=str(running.pk))
    assert event.actor_id == console.operator.pk and event.tenant_id == tenant_a.tenant.pk

    console.post(changelist, {"action": "resume_pods", "_selected_action": [str(running.pk)]})
    assert CloudPod.all_tenants.get(pk=running.pk).status == PodStatus.RUNNING
    # Deleting asks first: the page names the pods and nothing changes until the operator says yes.
    asked = console.post(changelist + "?status__exact=running", {"action": "delete_pods",
                                                                 "_selected_action": [str(running.pk)]})  # fmt: skip
    assert asked.status_code == 200 and "Are you sure?" in asked.content.decode()
    assert asked.context["objects"] == [CloudPod.all_tenants.get(pk=running.pk)]
    assert asked.context["changelist_url"].endswith("?status__exact=running")  # the list's filters are kept
    assert CloudPod.all_tenants.get(pk=running.pk).status == PodStatus.RUNNING
    console.post(changelist, {"action": "delete_pods", "_selected_action": [str(running.pk)], "confirmed": "yes"})
    assert CloudPod.all_tenants.get(pk=running.pk).status == PodStatus.DELETING
    assert Job.all_tenants.filter(object_id=str(running.pk)).count() == 3


@pytest.mark.parametrize("model", [Node, CloudPod], ids=lambda m: m.__name__)
def test_changelist_query_count_does_not_grow(console, model):
    tenants = [make_tenant(f"T{i}") for i in range(2)]
    changelist = url(model, "changelist")
    console.get(changelist)
    seq = [0]

    def rows(n):
        for _ in range(n):
            seq[0] += 1
            fx = tenants[seq[0] % 2]
            if model is Node:
                node_in(fx, f"n{seq[0]}")
            else:
                pod_in(fx, seq[0])

    rows(4)
    with CaptureQueriesContext(connection) as few:
        assert console.get(changelist).status_code == 200
    rows(16)
    with CaptureQueriesContext(connection) as many:
        response = console.get(changelist)
    assert len(response.context["cl"].result_list) == 20
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    assert Tenant.objects.count() >= 2


def test_operator_sets_a_tenants_pod_quota(console, tenant_a):
    from apps.cloudpods.models import TenantQuota

    assert console.get(url(TenantQuota, "changelist")).status_code == 200
    response = console.post(
        url(TenantQuota, "add"), {"tenant": str(tenant_a.tenant.pk), "max_pods": "7", "max_memory_mb": "", "note": "x"}
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    quota = TenantQuota.all_tenants.get(tenant=tenant_a.tenant)
    assert quota.max_pods == 7 and quota.max_memory_mb is None
    event = AuditEvent.objects.get(action="tenantquota.create", object_id=str(quota.pk))
    assert event.actor == console.operator and event.changes["max_pods"] == [None, 7]
    assert console.get(url(TenantQuota, "change", quota.pk)).status_code == 200
