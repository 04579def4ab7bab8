"""The generic API test every tenant-scoped viewset's test class subclasses (NetBox's idea).

A subclass declares what its viewset should do, and inherits the checks:

    class TestCustomerApi(ApiTestCase):
        viewset = CustomerViewSet
        basename = "customer"
        roles = {"list": Role.MEMBER, "create": Role.BILLING, ...}   # the expected matrix
        def make(self, fx, seq): ...            # an object in fx.tenant
        def create_payload(self, fx, seq): ...
        def update_payload(self, fx, obj, seq): ...

Checked for every declared action: anonymous → 401; each role gets success or 403 as the
matrix says; every role of another tenant gets 404 on this tenant's object and changes
nothing; a ``tenant`` in the payload is ignored; mutations write audit events; a POST with an
Idempotency-Key is replayed; the list's query count is the same for 5 and for 50 rows; and every
route the router makes for the viewset (extra actions included), with every method, answers 401
to anonymous, 404 to every role of another tenant (changing nothing), 403 or 404 to a role too
low, never 5xx, and writes an audit event whenever it changes something.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import AuthToken
from apps.audit.models import AuditEvent
from apps.audit.services import snapshot
from apps.tenancy.roles import ORDERED, Role
from apps.tenancy.scoping import all_tenants
from tests.conftest import TenantFixture, client_for

SUCCESS = {"list": 200, "retrieve": 200, "create": 201, "update": 200, "partial_update": 200, "destroy": 204}
METHOD = {
    "list": "get",
    "retrieve": "get",
    "create": "post",
    "update": "put",
    "partial_update": "patch",
    "destroy": "delete",
}
DETAIL = {"retrieve", "update", "partial_update", "destroy"}
MUTATING = {"create", "update", "partial_update", "destroy"}

_seq = itertools.count(1)


@pytest.mark.django_db
class ApiTestCase:
    viewset: ClassVar[type]
    basename: ClassVar[str]
    roles: ClassVar[dict[str, Role]]
    list_ceiling: ClassVar[int] = 12
    # Per-action answers that differ from SUCCESS (e.g. a DELETE that answers 202 while a job works).
    success: ClassVar[dict[str, int]] = {}

    # --- what a subclass provides -------------------------------------------------------------
    def make(self, fx: TenantFixture, seq: int):
        raise NotImplementedError

    def create_payload(self, fx: TenantFixture, seq: int) -> dict[str, Any]:
        raise NotImplementedError

    def update_payload(self, fx: TenantFixture, obj, seq: int) -> dict[str, Any]:
        raise NotImplementedError

    def url_kwargs(self, fx: TenantFixture) -> dict[str, Any]:
        return {}

    def lookup(self, obj) -> str:
        return str(obj.pk)

    def actor_for(self, fx: TenantFixture, role: Role, obj=None):
        return fx.users[role]

    # --- helpers --------------------------------------------------------------------------------
    def new(self, fx: TenantFixture):
        with fx.scope():
            return self.make(fx, next(_seq))

    def url(self, fx: TenantFixture, action: str, obj=None) -> str:
        kwargs = dict(self.url_kwargs(fx))
        if action in DETAIL:
            kwargs["pk"] = self.lookup(obj)
            return reverse(f"{self.basename}-detail", kwargs=kwargs)
        return reverse(f"{self.basename}-list", kwargs=kwargs)

    def call(self, client, fx: TenantFixture, action: str, obj=None, data=None):
        url = self.url(fx, action, obj)
        method = getattr(client, METHOD[action])
        if action == "create":
            data = self.create_payload(fx, next(_seq)) if data is None else data
        elif action in ("update", "partial_update"):
            data = self.update_payload(fx, obj, next(_seq)) if data is None else data
        if data is None:
            return method(url)
        return method(url, data, format="json")

    def state_of(self, obj) -> dict | None:
        with all_tenants():
            fresh = type(obj)._base_manager.filter(pk=obj.pk).first()
            return snapshot(fresh) if fresh is not None else None

    def success_code(self, action: str) -> int:
        return self.success.get(action, SUCCESS[action])

    def declared(self, *only: str) -> list[str]:
        return [a for a in SUCCESS if a in self.roles and (not only or a in only)]

    # --- the checks -----------------------------------------------------------------------------
    def test_anonymous_gets_401(self, tenant_a):
        obj = self.new(tenant_a)
        for action in self.declared():
            response = self.call(client_for(None, tenant_a.tenant), tenant_a, action, obj, data={})
            assert response.status_code == 401, (action, response.status_code, response.content[:300])

    def test_role_matrix(self, tenant_a):
        for action in self.declared():
            for role in ORDERED:
                obj = self.new(tenant_a)
                client = client_for(self.actor_for(tenant_a, role, obj), tenant_a.tenant)
                response = self.call(client, tenant_a, action, obj)
                allowed = role.includes(self.roles[action])
                expected = self.success_code(action) if allowed else 403
                assert response.status_code == expected, (
                    f"{role.value} {action}: {response.status_code} {response.content[:400]!r}"
                )

    def test_other_tenant_gets_404_and_changes_nothing(self, tenant_a, tenant_b):
        for action in self.declared(*DETAIL):
            for role in ORDERED:
                obj = self.new(tenant_a)
                before = self.state_of(obj)
                client = client_for(tenant_b.users[role], tenant_b.tenant)
                response = self.call(client, tenant_a, action, obj)
                assert response.status_code == 404, (role.value, action, response.status_code)
                assert self.state_of(obj) == before, (role.value, action)

    def test_tenant_in_payload_is_ignored(self, tenant_a, tenant_b):
        if "create" not in self.roles:
            pytest.skip("this API creates nothing")
        payload = {**self.create_payload(tenant_a, next(_seq)), "tenant": str(tenant_b.tenant.pk)}
        client = client_for(tenant_a.owner, tenant_a.tenant)
        response = self.call(client, tenant_a, "create", data=payload)
        assert response.status_code == 201, response.content
        created = self.created_object(response)
        assert created.tenant_id == tenant_a.tenant.pk

    def created_object(self, response):
        model = self.viewset.queryset.model
        with all_tenants():
            return model._base_manager.get(pk=response.data["id"])

    def test_mutations_are_audited(self, tenant_a):
        client = client_for(tenant_a.owner, tenant_a.tenant)
        for action in self.declared(*MUTATING):
            obj = self.new(tenant_a)
            before = AuditEvent.objects.filter(tenant=tenant_a.tenant).count()
            response = self.call(client, tenant_a, action, obj)
            assert response.status_code == self.success_code(action), response.content
            events = AuditEvent.objects.filter(tenant=tenant_a.tenant).order_by("-created_at")
            assert events.count() > before, f"{action} wrote no audit event"
            event = events.first()
            assert event.actor_id == tenant_a.owner.pk
            assert event.request_id and event.ip

    def test_idempotent_create_replays_first_answer(self, tenant_a):
        if "create" not in self.roles:
            pytest.skip("this API creates nothing")
        client = client_for(tenant_a.owner, tenant_a.tenant)
        payload = self.create_payload(tenant_a, next(_seq))
        url = self.url(tenant_a, "create")
        first = client.post(url, payload, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
        second = client.post(url, payload, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
        assert first.status_code == 201, first.content
        assert second.status_code == 201
        assert second.json() == first.json()
        assert second["Idempotent-Replayed"] == "true"
        changed = client.post(url, {**payload, "x-changed": 1}, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
        assert changed.status_code == 400

    def test_list_query_count_is_constant(self, tenant_a, django_assert_max_num_queries):
        if "list" not in self.roles:
            pytest.skip("this API has no list")
        client = client_for(tenant_a.owner, tenant_a.tenant)
        for _ in range(5):
            self.new(tenant_a)
        url = self.url(tenant_a, "list")
        client.get(url)  # warm per-process caches (content types, sites)
        with CaptureQueriesContext(connection) as five:
            assert client.get(url).status_code == 200
        assert len(five) <= self.list_ceiling, [q["sql"] for q in five.captured_queries]
        for _ in range(45):
            self.new(tenant_a)
        # Making 45 rows can take longer than the token's last-used granularity on a loaded machine: the
        # touch (one UPDATE a minute at most) would then count against the list, not the rows.
        AuthToken.objects.filter(user=tenant_a.owner).update(last_used_at=timezone.now())
        with django_assert_max_num_queries(len(five)):
            response = client.get(url)
        assert response.status_code == 200
        assert response.json()["count"] >= 50

    # --- every route of the viewset, generated from the router ------------------------------------
    def routes(self):
        """(method, action, url name, detail) for every route the router makes for this viewset,
        extra actions included: a route added later is walked without anyone editing a test."""
        from mpanel.api import router

        for _prefix, viewset, basename in router.registry:
            if viewset is not self.viewset or basename != self.basename:
                continue
            for route in router.get_routes(viewset):
                for method, action in route.mapping.items():
                    if hasattr(viewset, action) and method in viewset.http_method_names:
                        yield method, action, route.name.format(basename=basename), route.detail

    def route_url(self, fx, name: str, detail: bool, obj) -> str:
        kwargs = dict(self.url_kwargs(fx))
        if detail:
            kwargs["pk"] = self.lookup(obj)
        return reverse(name, kwargs=kwargs)

    def required_role(self, action: str) -> Role | None:
        required = self.viewset.required_roles.get(action)
        return getattr(required, "role", required)

    def test_every_route_and_method(self, tenant_a, tenant_b):
        walked = 0
        for method, action, name, detail in self.routes():
            walked += 1
            probe = self.new(tenant_a)
            url = self.route_url(tenant_a, name, detail, probe)
            anonymous = getattr(client_for(None, tenant_a.tenant), method)(url, {}, format="json")
            assert anonymous.status_code == 401, (method, url, anonymous.status_code)

            if detail:
                before = self.state_of(probe)
                for role in ORDERED:
                    response = getattr(client_for(tenant_b.users[role], tenant_b.tenant), method)(
                        url, {}, format="json"
                    )
                    assert response.status_code == 404, (role.value, method, url, response.status_code)
                assert self.state_of(probe) == before, (method, url, "changed by another tenant")

            required = self.required_role(action)
            for role in ORDERED:
                obj = self.new(tenant_a) if method != "get" else probe
                url = self.route_url(tenant_a, name, detail, obj)
                client = client_for(tenant_a.users[role], tenant_a.tenant)
                events = AuditEvent.objects.filter(tenant=tenant_a.tenant).count()
                state = self.state_of(obj)
                response = getattr(client, method)(url, {}, format="json")
                code = response.status_code
                assert code < 500, (role.value, method, url, code, response.content[:300])
                if required is None or not role.includes(required):
                    assert code in (403, 404), (role.value, method, url, code)
                changed = not detail or self.state_of(obj) != state  # a collection POST creates
                if method != "get" and 200 <= code < 300 and changed:
                    after = AuditEvent.objects.filter(tenant=tenant_a.tenant).count()
                    assert after > events, f"{method.upper()} {url} ({action}) changed something without an audit event"
        assert walked, "the router has no route for this viewset"
