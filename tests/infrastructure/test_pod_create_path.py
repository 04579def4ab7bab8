"""The CloudPod create path's statements (issue 21): one transaction for the reservation, the pod, its
audit and its job, with a constant number of statements; a name still held by a pod being deleted is
refused by the unique constraint alone (no savepoint of its own) and leaves nothing behind."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.cloudpods import services
from apps.cloudpods.models import CloudPod, PodStatus
from apps.common.exceptions import InvalidInput
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.nodes.models import Node
from tests.pods_support import node_in


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    """Jobs are committed but never sent: the panel's side only."""
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


@pytest.mark.django_db
def test_a_create_is_a_constant_number_of_statements(tenant_a):
    node_in(tenant_a, "node-1")
    node_in(tenant_a, "node-2")
    with tenant_a.scope(), CaptureQueriesContext(connection) as first:
        services.pod_create(tenant=tenant_a.tenant, name="web-1", plan="pod-xs")
    with tenant_a.scope(), CaptureQueriesContext(connection) as second:
        services.pod_create(tenant=tenant_a.tenant, name="web-2", plan="pod-xs")
    statements = [q["sql"] for q in second.captured_queries]
    # nodes FOR UPDATE, tenant FOR NO KEY UPDATE, live pods' usage and the name in one read, the quota
    # override, the node's reservation, the pod, its audit, the job and its audit (+ savepoints).
    assert len(statements) == len(first.captured_queries) <= 14, "\n".join(statements)
    assert sum(1 for sql in statements if 'FROM "cloudpods_cloudpod"' in sql) == 1, statements


@pytest.mark.django_db
def test_a_name_held_by_a_pod_being_deleted_is_refused_and_nothing_is_left(tenant_a):
    node = node_in(tenant_a, "node-1")
    with tenant_a.scope():
        old = services.pod_create(tenant=tenant_a.tenant, name="same", plan="pod-xs")
        CloudPod.objects.filter(pk=old.pk).update(status=PodStatus.DELETING)  # still holds its name
        before = Node.objects.values("allocated_memory_mb", "allocated_pods").get(pk=node.pk)
        counts = (CloudPod.objects.count(), Job.objects.count(), AuditEvent.objects.count())
        with pytest.raises(InvalidInput) as refused:
            services.pod_create(tenant=tenant_a.tenant, name="same", plan="pod-xs")
        assert refused.value.field == "name" and "exists already" in refused.value.message
        # The reservation went back with the refused insert; the surrounding transaction goes on.
        assert Node.objects.values("allocated_memory_mb", "allocated_pods").get(pk=node.pk) == before
        assert (CloudPod.objects.count(), Job.objects.count(), AuditEvent.objects.count()) == counts
        services.pod_create(tenant=tenant_a.tenant, name="other", plan="pod-xs")
