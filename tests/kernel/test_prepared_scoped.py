"""Issue 21: reads compiled once per process under the tenant scope (``ScopedPreparedQuery``), and the one
every job and move of every resource makes first: ``Lifecycle.locked``.

A prepared read answers what the model's ``objects`` manager answers, in every scope: the tenant's row
with its related rows, another tenant's row not at all, every row with scopes disabled, and ScopeError
with no tenant in scope; one compile serves every tenant; the row lock is taken as the ORM takes it.
"""

from __future__ import annotations

import uuid
from functools import partial

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from django_scopes.exceptions import ScopeError

from apps.cloudpods.models import CloudPod
from apps.cloudpods.services import pods
from apps.jobs.lifecycle import LIFECYCLES
from apps.tenancy.scoping import ScopedPreparedQuery, all_tenants, tenant_scope
from tests.pods_support import pod_in

pytestmark = pytest.mark.django_db


def orm_locked(lifecycle, pk):
    return lifecycle.model.objects.select_for_update(of=("self",)).select_related(*lifecycle.related).get(pk=pk)


def outcome(read):
    try:
        with transaction.atomic():
            row = read()
    except Exception as exc:
        return type(exc)
    values = {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields}
    related = {name: getattr(row, name).pk for name in ("node", "tenant") if name in row._state.fields_cache}
    return type(row), values, related


def test_a_locked_pod_reads_as_the_orm_reads_it_in_every_scope(tenant_a, tenant_b):
    pod = pod_in(tenant_a, 1)
    foreign = pod_in(tenant_b, 2)
    keys = [pod.pk, str(pod.pk), pod.pk.hex, "{" + str(pod.pk) + "}", foreign.pk, uuid.uuid4(), "not-a-uuid", 7]
    scopes = [lambda: tenant_scope(tenant_a.tenant), lambda: tenant_scope(tenant_b.tenant), all_tenants]
    for key in keys:
        for scope in scopes:
            with scope():
                mine, theirs = outcome(partial(pods.locked, key)), outcome(partial(orm_locked, pods, key))
            assert mine == theirs, (key, mine, theirs)
        # With no tenant in scope both refuse (fail-closed).
        assert outcome(partial(pods.locked, key)) in (ScopeError, ValidationError)
        assert outcome(partial(pods.locked, key)) == outcome(partial(orm_locked, pods, key))
    with tenant_scope(tenant_a.tenant), transaction.atomic():
        row = pods.locked(pod)
        assert row == pod and row.node == pod.node and row.tenant == tenant_a.tenant
        assert isinstance(row, CloudPod) and not row._state.adding and row._state.db == "default"
    with tenant_scope(tenant_b.tenant), transaction.atomic(), pytest.raises(CloudPod.DoesNotExist):
        pods.locked(pod)  # another tenant's pod: not found, as a 404


def test_every_lifecycle_compiles_its_lock_and_refuses_without_a_tenant(tenant_a):
    assert len(LIFECYCLES) >= 10
    for kind, lifecycle in LIFECYCLES.items():
        with tenant_scope(tenant_a.tenant), transaction.atomic(), pytest.raises(lifecycle.model.DoesNotExist):
            lifecycle.locked(uuid.uuid4())
        with all_tenants(), transaction.atomic(), pytest.raises(lifecycle.model.DoesNotExist):
            lifecycle.locked(uuid.uuid4())
        with transaction.atomic(), pytest.raises(ScopeError):
            lifecycle.locked(uuid.uuid4())
        assert kind == lifecycle.kind


def test_one_compile_serves_every_tenant(tenant_a, tenant_b):
    pod_a, pod_b = pod_in(tenant_a, 1), pod_in(tenant_b, 2)
    connections["default"].__dict__.pop("_mpanel_prepared", None)
    for fx, pod in ((tenant_a, pod_a), (tenant_b, pod_b), (tenant_a, pod_a)):
        with fx.scope(), transaction.atomic():
            assert pods.locked(pod.pk).name == pod.name
    held = [key for key in connections["default"].__dict__["_mpanel_prepared"] if key[0] == id(pods._locking._scoped)]
    assert len(held) == 1


def test_the_lock_is_the_orms(tenant_a):
    pod = pod_in(tenant_a, 1)
    with tenant_scope(tenant_a.tenant):
        with transaction.atomic(), CaptureQueriesContext(connection) as prepared:
            pods.locked(pod.pk)
        with transaction.atomic(), CaptureQueriesContext(connection) as orm:
            orm_locked(pods, pod.pk)
        [mine] = [q["sql"] for q in prepared.captured_queries if q["sql"].startswith("SELECT")]
        [theirs] = [q["sql"] for q in orm.captured_queries if q["sql"].startswith("SELECT")]
        assert mine.split(" FROM ")[0] == theirs.split(" FROM ")[0]  # the same columns, in the same order
        if connection.features.has_select_for_update:
            assert mine.endswith('FOR UPDATE OF "cloudpods_cloudpod"')
            assert theirs.endswith('FOR UPDATE OF "cloudpods_cloudpod"')


@pytest.mark.django_db(transaction=True)
def test_a_lock_outside_a_transaction_is_refused_as_the_orm_refuses_it(tenant_a):
    pod = pod_in(tenant_a, 1)
    if not connection.features.has_select_for_update:
        pytest.skip("a database without row locks: the ORM takes none either")
    with tenant_scope(tenant_a.tenant):
        with transaction.atomic():
            assert pods.locked(pod.pk) == pod  # compiled here: the check below is each call's, not the compile's
        with pytest.raises(TransactionManagementError):
            pods.locked(pod.pk)
        with pytest.raises(TransactionManagementError):
            orm_locked(pods, pod.pk)


def test_a_scoped_query_s_values_are_checked(tenant_a):
    query = ScopedPreparedQuery(CloudPod, lambda name: CloudPod.all_tenants.filter(name=name), name=str)
    pod = pod_in(tenant_a, 1)
    with tenant_scope(tenant_a.tenant):
        assert [p.pk for p in query.rows(name=pod.name)] == [pod.pk]
        with pytest.raises(TypeError):
            query.rows(name=7)
    with pytest.raises(ScopeError):
        query.rows(name=pod.name)
