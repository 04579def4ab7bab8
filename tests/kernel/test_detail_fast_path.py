"""Issue 21: a detail route reads its row by a query compiled once per viewset class
(``apps.tenancy.viewsets._detail_read``) when the request reads exactly what the general path reads.

For every tenant-scoped route of the API the fast path sends the general path's SELECT, text and values,
and answers the same bytes; a real pod answers alike for every role, a foreign tenant, an operator, a
query parameter and a key that is not a UUID.
"""

from __future__ import annotations

import contextlib
import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.tenancy import viewsets
from apps.tenancy.roles import ORDERED, Role
from mpanel.api import router
from tests.conftest import client_for, operator_client_for
from tests.pods_support import pod_in

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def general_path():
    patch = pytest.MonkeyPatch()
    try:
        patch.setattr(viewsets.TenantScopedViewSet, "_prepared_object", lambda self: None)
        yield
    finally:
        patch.undo()


def selects(captured, table: str) -> list[str]:
    return [q["sql"] for q in captured if q["sql"].startswith("SELECT") and f'FROM "{table}"' in q["sql"]]


@pytest.fixture(autouse=True)
def taken(monkeypatch):
    """The requests the fast path answered (a row, or its 404), by URL."""
    answered: list[str] = []
    original = viewsets.TenantScopedViewSet._prepared_object

    def spy(self):
        try:
            obj = original(self)
        except Exception:
            answered.append(self.request.path)
            raise
        if obj is not None:
            answered.append(self.request.path)
        return obj

    monkeypatch.setattr(viewsets.TenantScopedViewSet, "_prepared_object", spy)
    return answered


def both(client, url: str, table: str | None = None):
    with CaptureQueriesContext(connection) as fast_sql:
        fast = client.get(url)
    with general_path(), CaptureQueriesContext(connection) as general_sql:
        general = client.get(url)
    assert (fast.status_code, fast.content) == (general.status_code, general.content), url
    if table is not None:
        assert selects(fast_sql.captured_queries, table) == selects(general_sql.captured_queries, table), url
    return fast


def detail_routes():
    for prefix, viewset, _basename in router.registry:
        if issubclass(viewset, viewsets.TenantScopedViewSet) and viewsets._detail_read(viewset) is not None:
            yield prefix, viewset


def test_most_routes_take_it():
    taken = [prefix for prefix, _ in detail_routes()]
    assert "cloudpods" in taken and len(taken) >= 25


def test_every_route_sends_the_general_paths_select(tenant_a, taken):
    client = client_for(tenant_a.owner, tenant_a.tenant)
    routes = list(detail_routes())
    for prefix, viewset in routes:
        key = uuid.uuid4()
        path = re.sub(r"\(\?P<\w+>[^)]*\)", str(uuid.uuid4()), prefix)  # a nested route's parent: unknown
        table = viewset.queryset.model._meta.db_table
        answer = both(client, f"/api/v1/{path}/{key}/", table)
        assert answer.status_code in (403, 404, 405), (prefix, answer.status_code)
    # Most answered their 404 by the fast path (a nested route's unknown parent or a role refused first).
    assert len(taken) >= len(routes) // 2


def test_a_pod_answers_alike_for_everyone(tenant_a, tenant_b, taken, django_assert_max_num_queries):
    pod = pod_in(tenant_a, 1)
    url = f"/api/v1/cloudpods/{pod.pk}/"
    for role in ORDERED:
        answer = both(client_for(tenant_a.users[role], tenant_a.tenant), url, "cloudpods_cloudpod")
        assert answer.status_code in (200, 403)
    assert both(client_for(tenant_a.owner, tenant_a.tenant), url).json()["id"] == str(pod.pk)
    assert both(client_for(tenant_b.owner, tenant_b.tenant), url).status_code == 404  # another tenant's pod
    owner = client_for(tenant_a.owner, tenant_a.tenant)
    for other in (f"{url}?status=running", f"{url}?status=deleted", url.replace(str(pod.pk), "-" * 36)):
        both(owner, other)
    both(operator_client_for(tenant_b.owner), url)
    # Fast: the roles allowed to read, the owner again, the foreign tenant and the operator (whose own tenant
    # this is not: its 404). General: a query parameter, a key that is not a UUID. The roles refused read nothing.
    assert taken.count(url) == sum(r.includes(Role.BILLING) for r in ORDERED) + 3
    del taken[:]
    with django_assert_max_num_queries(4):
        assert owner.get(url).status_code == 200
    assert taken == [url]
