"""Issue 21: the writes made by a statement made once per model (``apps.common.statements.save``: every audit
event, and a tenant-owned row's insert and ``save(update_fields=…)``) send the ORM's SQL, text and values, after
the same checks, with the same failures; every other save, and any save someone listens to, is the ORM's.
"""

from __future__ import annotations

import contextlib

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext
from django_scopes.exceptions import ScopeError

from apps.audit import services as audit
from apps.cloudpods.models import CloudPod, PodStatus
from apps.common import context, statements
from apps.nodes.models import Node
from apps.tenancy.scoping import all_tenants
from tests.pods_support import node_in

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def orm_only():
    patch = pytest.MonkeyPatch()
    patch.setattr(statements, "save", lambda obj, **kwargs: False)
    try:
        yield
    finally:
        patch.undo()


def writes(captured) -> list[str]:
    return [q["sql"] for q in captured if q["sql"].startswith(("INSERT", "UPDATE"))]


def columns(obj, skip=("id", "created_at", "updated_at")) -> dict:
    with all_tenants():
        row = type(obj)._base_manager.get(pk=obj.pk)
    return {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields if f.attname not in skip}


def make_pod(fx, node, name="p1", **extra) -> CloudPod:
    return CloudPod(tenant=extra.pop("tenant", fx.tenant), name=name, plan="pod-xs", image="busybox", node=node,
                    container_id=f"mp-{name}", vcpu=1, memory_mb=128, disk_gb=1, pids=64, **extra)  # fmt: skip


def test_an_audit_event_is_the_row_save_writes(tenant_a, request):
    node = node_in(tenant_a)
    token = context.activate(context.RequestContext(request_id="req-1", ip="192.0.2.7", via="api"))
    request.addfinalizer(lambda: context.reset(token))
    kwargs = dict(action="node.test", obj=node, tenant=tenant_a.tenant, before={"a": 1}, after={"a": 2, "é": [1]})
    with CaptureQueriesContext(connection) as plain:
        mine = audit.record(actor=tenant_a.owner, **kwargs)
    with orm_only(), CaptureQueriesContext(connection) as orm:
        theirs = audit.record(actor=tenant_a.owner, **kwargs)
    assert len(writes(plain.captured_queries)) == len(writes(orm.captured_queries)) == 1
    assert columns(mine) == columns(theirs)
    assert columns(mine)["changes"] == {"a": [1, 2], "é": [None, [1]]} and columns(mine)["ip"] == "192.0.2.7"
    assert columns(mine)["request_id"] == "req-1" and columns(mine)["via"] == "api"
    assert not mine._state.adding and mine._state.db == "default"


def test_a_new_row_and_an_update_of_fields_send_the_orms_statements(tenant_a):
    node = node_in(tenant_a)
    with tenant_a.scope():
        for name, way in (("plain", contextlib.nullcontext), ("orm", orm_only)):
            pod = make_pod(tenant_a, node, name)
            with way(), CaptureQueriesContext(connection) as insert:
                pod.save(force_insert=True)
            with way(), CaptureQueriesContext(connection) as update:
                pod.status, pod.last_error, pod.memory_mb = PodStatus.RUNNING, "", 256
                pod.save(update_fields=["status", "last_error", "updated_at"])
            with way(), CaptureQueriesContext(connection) as created:
                Node.objects.create(
                    tenant=tenant_a.tenant, hostname=f"n-{name}", vcpu=1, memory_mb=1, disk_gb=1, max_pods=1
                )
            if name == "plain":
                mine = (pod, writes(insert.captured_queries), writes(update.captured_queries), created)
            else:
                theirs = (pod, writes(insert.captured_queries), writes(update.captured_queries), created)
    # The same statements but for the row's own values (its id, name, times).
    (a, a_insert, a_update, a_created), (b, b_insert, b_update, b_created) = mine, theirs
    assert len(a_insert) == len(b_insert) == 1 and len(a_update) == len(b_update) == 1
    assert a_insert[0].split(" VALUES ")[0] == b_insert[0].split(" VALUES ")[0]
    assert a_update[0].split(" = ")[0] == b_update[0].split(" = ")[0]
    assert a_update[0].count("=") == b_update[0].count("=") == 4  # three fields and the key, in the model's order
    assert len(writes(a_created.captured_queries)) == len(writes(b_created.captured_queries)) == 1
    with tenant_a.scope():  # and the statements were this module's, not the ORM's
        pod = make_pod(tenant_a, node, "direct")
        assert statements.save(pod, force_insert=True) is True and statements.save(pod, update_fields=["plan"])
        assert statements.save(pod) is False  # a whole row saved again: the ORM's update-else-insert
    skip = ("id", "created_at", "updated_at", "name", "container_id")
    assert columns(a, skip) == columns(b, skip) and columns(a, skip)["memory_mb"] == 128  # not a field named


def test_the_checks_and_failures_of_save(tenant_a, tenant_b):
    node_a, node_b = node_in(tenant_a), node_in(tenant_b)
    refusals = [
        (lambda: make_pod(tenant_a, node_a, "p3", tenant=None), None, ScopeError),  # no tenant, none in scope
        (lambda: make_pod(tenant_b, node_b, "p4"), tenant_a, ScopeError),  # another tenant than the scope's
        (lambda: make_pod(tenant_a, node_b, "p5"), tenant_a, ValidationError),  # a link to another tenant's node
    ]
    for made, fx, error in refusals:
        for way in (contextlib.nullcontext, orm_only):
            pod = made()
            with way(), fx.scope() if fx else all_tenants(), pytest.raises(error):
                pod.save(force_insert=True)
            assert not CloudPod.all_tenants.filter(name=pod.name).exists()
    with tenant_a.scope():
        make_pod(tenant_a, node_a, "same").save(force_insert=True)
        for way in (contextlib.nullcontext, orm_only):
            twin = make_pod(tenant_a, node_a, "same")  # a live pod's name is unique in a tenant
            with way(), transaction.atomic():
                with pytest.raises(IntegrityError):
                    twin.save(force_insert=True)
                assert twin._state.adding is True and connection.needs_rollback is True
            gone = make_pod(tenant_a, node_a, "gone")
            gone.save(force_insert=True)
            CloudPod.objects.filter(pk=gone.pk).delete()
            with way(), pytest.raises(DatabaseError, match="did not affect any rows"), transaction.atomic():
                gone.save(update_fields=["status"])
            with way(), pytest.raises(ValueError), transaction.atomic():
                gone.save(update_fields=["no_such_field"])


def test_what_only_the_orm_writes_is_left_to_it(tenant_a):
    node = node_in(tenant_a)
    heard = []

    def receiver(sender, instance, created, **kwargs):
        heard.append((instance.name, created))

    with tenant_a.scope():
        pod = make_pod(tenant_a, node, "p1")
        pod.save(force_insert=True)
        pod.memory_mb = F("memory_mb") * 2  # an expression: the ORM's compiler writes it
        assert statements.save(pod, update_fields=["memory_mb"]) is False
        pod.save(update_fields=["memory_mb"])
        pod.refresh_from_db()
        assert pod.memory_mb == 256
        post_save.connect(receiver, sender=CloudPod)
        try:
            assert statements.save(make_pod(tenant_a, node, "unheard"), force_insert=True) is False
            make_pod(tenant_a, node, "heard").save(force_insert=True)
            pod.save(update_fields=["status"])
        finally:
            post_save.disconnect(receiver, sender=CloudPod)
    assert heard == [("heard", True), ("p1", False)]


def test_create_writes_what_the_managers_create_writes():
    from apps.billing.models import WebhookEvent
    from apps.tenancy.models import Tenant

    fields = dict(provider="generic", type="payment.succeeded", payload={"a": [1, "é"]}, raw_body="{}")
    with CaptureQueriesContext(connection) as plain:
        mine = statements.create(WebhookEvent, event_id="e-1", **fields)
    with orm_only(), CaptureQueriesContext(connection) as orm:
        theirs = WebhookEvent.objects.create(event_id="e-2", **fields)
    assert (
        writes(plain.captured_queries)[0].split(" VALUES ")[0] == writes(orm.captured_queries)[0].split(" VALUES ")[0]
    )
    assert {**columns(mine), "event_id": ""} == {**columns(theirs), "event_id": ""}
    with pytest.raises(IntegrityError), transaction.atomic():
        statements.create(WebhookEvent, event_id="e-1", **fields)  # the same delivery again: the unique key
    # A model with a save of its own (a tenant's slug) saves itself.
    assert statements.create(Tenant, name="Made Here").slug == "made-here"
