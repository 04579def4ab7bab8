"""Issue 21: rows inserted by a statement made once per model (``apps.common.statements.insert``: every audit
event, a pod, a job on the embedded default) are the rows ``save(force_insert=True)`` writes, after the same
checks, with the same failures.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext
from django_scopes.exceptions import ScopeError

from apps.audit import services as audit
from apps.audit.models import AuditEvent
from apps.cloudpods.models import CloudPod
from apps.common import context, statements
from apps.tenancy.scoping import all_tenants
from tests.pods_support import node_in

pytestmark = pytest.mark.django_db


def columns(obj, skip=("id", "created_at", "updated_at")) -> dict:
    """The row as the database holds it, read back through the ORM."""
    model = type(obj)
    with all_tenants():
        row = model._base_manager.get(pk=obj.pk)
    return {f.attname: getattr(row, f.attname) for f in model._meta.concrete_fields if f.attname not in skip}


def test_an_audit_event_is_the_row_save_writes(tenant_a, request):
    node = node_in(tenant_a)
    token = context.activate(context.RequestContext(request_id="req-1", ip="192.0.2.7", via="api"))
    request.addfinalizer(lambda: context.reset(token))
    kwargs = dict(action="node.test", obj=node, tenant=tenant_a.tenant, before={"a": 1}, after={"a": 2, "é": [1]})
    with CaptureQueriesContext(connection) as plain:
        mine = audit.record(actor=tenant_a.owner, **kwargs)
    theirs = audit.build(actor=tenant_a.owner, **kwargs)
    with CaptureQueriesContext(connection) as orm:
        theirs.save(force_insert=True)
    assert len(plain.captured_queries) == len(orm.captured_queries) == 1
    assert columns(mine) == columns(theirs)
    assert columns(mine)["changes"] == {"a": [1, 2], "é": [None, [1]]} and columns(mine)["ip"] == "192.0.2.7"
    assert columns(mine)["request_id"] == "req-1" and columns(mine)["via"] == "api"
    assert not mine._state.adding and mine._state.db == "default"
    with all_tenants():
        stored = AuditEvent.objects.get(pk=mine.pk)
    assert abs(stored.created_at - mine.created_at).total_seconds() < 1e-3


def make_pod(fx, node, name="p1", **extra) -> CloudPod:
    return CloudPod(tenant=extra.pop("tenant", fx.tenant), name=name, plan="pod-xs", image="busybox", node=node,
                    container_id=f"mp-{name}", vcpu=1, memory_mb=128, disk_gb=1, pids=64, **extra)  # fmt: skip


def test_a_tenant_row_is_the_row_save_writes_after_the_same_checks(tenant_a, tenant_b):
    node_a, node_b = node_in(tenant_a), node_in(tenant_b)
    with tenant_a.scope():
        mine, theirs = make_pod(tenant_a, node_a, "p1"), make_pod(tenant_a, node_a, "p2")
        mine.insert()
        theirs.save(force_insert=True)
    assert {**columns(mine), "name": "", "container_id": ""} == {**columns(theirs), "name": "", "container_id": ""}
    # The checks of save, and nothing written when they refuse.
    refusals = [
        (lambda: make_pod(tenant_a, node_a, "p3", tenant=None), None, ScopeError),  # no tenant, none in scope
        (lambda: make_pod(tenant_b, node_b, "p4"), tenant_a, ScopeError),  # another tenant than the scope's
        (lambda: make_pod(tenant_a, node_b, "p5"), tenant_a, ValidationError),  # a link to another tenant's node
    ]
    for made, fx, error in refusals:
        for write in ("insert", "save"):
            pod = made()
            with fx.scope() if fx else all_tenants(), pytest.raises(error):
                pod.insert() if write == "insert" else pod.save(force_insert=True)
            assert not CloudPod.all_tenants.filter(name=pod.name).exists()


def test_a_failed_insert_leaves_a_new_row_and_a_transaction_to_roll_back(tenant_a):
    node = node_in(tenant_a)
    with tenant_a.scope():
        make_pod(tenant_a, node, "same").insert()
        for write in ("insert", "save"):
            twin = make_pod(tenant_a, node, "same")  # a live pod's name is unique in a tenant
            with transaction.atomic():
                with pytest.raises(IntegrityError):
                    twin.insert() if write == "insert" else twin.save(force_insert=True)
                assert twin._state.adding is True
                assert connection.needs_rollback is True


def test_a_model_whose_saves_are_listened_to_is_saved(tenant_a):
    node = node_in(tenant_a)
    heard = []

    def receiver(sender, instance, created, **kwargs):
        heard.append((instance.name, created))

    post_save.connect(receiver, sender=CloudPod)
    try:
        assert not statements.plain_insert_allowed(CloudPod)
        with tenant_a.scope():
            make_pod(tenant_a, node, "heard").insert()
    finally:
        post_save.disconnect(receiver, sender=CloudPod)
    assert heard == [("heard", True)] and statements.plain_insert_allowed(CloudPod)
