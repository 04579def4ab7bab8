"""Regression tests for what the schemathesis fuzz run found (see docs/testing.md, "Proof under
pressure"): each was a 500 and is now a clear 4xx (or a correct 200)."""

import functools
import json
import re
import uuid

import pytest
from django.db import DataError, OperationalError
from django.urls import reverse

from apps.common.exceptions import exception_handler
from tests.conftest import client_for
from tests.pods_support import node_in, pod_in

pytestmark = pytest.mark.django_db


def test_a_foreign_key_filter_is_bound_to_the_requests_tenant(tenant_a, tenant_b):
    """`?node=` used to run django-filter's import-time queryset with no tenant in scope (500)."""
    mine = pod_in(tenant_a, 1)
    theirs = node_in(tenant_b, hostname="their-node")
    client = client_for(tenant_a.owner, tenant_a.tenant)
    url = reverse("cloudpod-list")

    response = client.get(url, {"node": str(mine.node_id)})
    assert response.status_code == 200, response.content
    assert [row["id"] for row in response.json()["results"]] == [str(mine.pk)]
    # Another tenant's node is as unknown as a made-up id: the same 400, no existence oracle.
    for node_id in (theirs.pk, uuid.uuid4()):
        response = client.get(url, {"node": str(node_id)})
        assert response.status_code == 400, response.content
        assert "node" in response.json()


@pytest.mark.parametrize("name", ["security-event-list", "security-my-event-list", "customer-list"])
def test_datetime_filters_take_any_offset_and_refuse_out_of_range_years(tenant_a, name):
    """An offset PostgreSQL refuses (+18:04) used to be a DataError (500)."""
    client = client_for(tenant_a.owner, tenant_a.tenant)
    url = reverse(name)
    response = client.get(url, {"created_before": "8723-05-04T00:16:16+18:04"})
    assert response.status_code == 200, response.content
    response = client.get(url, {"created_after": "0001-01-01T00:00:00+05:00"})  # year 0 in UTC
    assert response.status_code == 400, response.content
    assert "created_after" in response.json()


def test_an_unrouted_api_url_is_a_json_404(tenant_a):
    client = client_for(tenant_a.owner, tenant_a.tenant)
    response = client.get("/api/v1/customers/not-a-uuid/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


def test_database_errors_map_to_clear_answers():
    response = exception_handler(DataError("value out of range"), {})
    assert response.status_code == 400 and response.data["code"] == "invalid"
    response = exception_handler(OperationalError("server closed the connection unexpectedly"), {})
    assert response.status_code == 503 and response.data["code"] == "unavailable"
    assert response["Retry-After"]


@pytest.mark.parametrize("size", ["null", "0", "-1", "201", "1.5"])
def test_a_page_size_out_of_range_is_a_400(tenant_a, size):
    client = client_for(tenant_a.owner, tenant_a.tenant)
    response = client.get(reverse("customer-list"), {"page_size": size})
    assert response.status_code == 400, response.content
    assert "page_size" in response.json()
    assert client.get(reverse("customer-list"), {"page_size": "200"}).status_code == 200


def test_a_boolean_filter_refuses_other_words(tenant_a):
    """django-filter read `?maintenance_mode=-205880` as "no filter" and listed everything."""
    client = client_for(tenant_a.owner, tenant_a.tenant)
    url = reverse("shield-policy-list")
    assert client.get(url, {"maintenance_mode": "true"}).status_code == 200
    response = client.get(url, {"maintenance_mode": "-205880"})
    assert response.status_code == 400 and "maintenance_mode" in response.json()


def test_http_delete_on_the_file_manager_is_refused_not_a_crash(tenant_a):
    """The file manager's `delete` action also answered HTTP DELETE; on the list route that was a 500."""
    client = client_for(tenant_a.owner, tenant_a.tenant)
    response = client.delete(reverse("hosting-files-list"))
    assert response.status_code in (403, 405), response.content


# -- generated: every documented body, query and webhook against hostile shapes ---------------------
#
# Walks the OpenAPI schema our own generator produces (a route added later is covered with no edit
# here) and sends every operation each shape below, as the OWNER of a tenant that holds one object of
# the common kinds (detail routes reach their body's validation with a real id). Each shape is one
# test that tries every operation and lists every one that answered 5xx, or that answered 4xx and
# still wrote a row.

HOSTILE_BODIES: dict[str, bytes] = {
    "deep array (100,000)": b"[" * 100_000,
    "deep object (5,000)": b'{"a":' * 5_000,
    "one level past the bound": b"[" * 33 + b"]" * 33,
    "NaN": b'{"amount": NaN}',
    "Infinity": b'{"amount": -Infinity}',
    "1e309": b'{"amount": 1e309, "port": 1e309}',
    "a list": b"[]",
    "a string": b'"text"',
    "a number": b"12",
    "null": b"null",
    "not UTF-8": b'{"name": "\xff\xfe"}',
    "not JSON": b"{'name': 1,}",
}
HOSTILE_VALUES: dict[str, object] = {
    "nested 30 deep": json.loads("[" * 30 + "]" * 30),
    "huge integer": 10**30,
    "negative huge integer": -(10**30),
    "huge float": 1.7e308,
    "'1e309'": "1e309",
    "'NaN'": "NaN",
    "'Infinity'": "Infinity",
    "20 nines": "99999999999999999999",
    "port 70000": 70000,
    "port -1": -1,
    "control characters": "a\x00b\x07\x1b[31m\u202ez",
    "a list": [],
    "an object": {"a": {"b": []}},
    "100,000 characters": "x" * 100_000,
}
QUERY_VALUES = ["1e309", "NaN", "-1", "99999999999999999999", "\x00", "x" * 3000, "[]", "2026-13-45T25:61"]
# Operations that end the test's own session or would need a second factor (they are exercised
# by their own tests); everything else is tried.
SKIPPED = re.compile(r"/auth/logout/|/security/me/sessions/")
# Tables a refused request may still touch by design: session, token and idempotency bookkeeping.
UNCOUNTED = {"django_session", "common_idempotencyrecord", "accounts_authtoken"}  # + a token's last use


@functools.cache
def _documented() -> dict:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    raw = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(raw))


def _operations(methods: set[str]):
    schema = _documented()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method.upper() in methods and not SKIPPED.search(path):
                yield path, method.upper(), operation


def _body_properties(operation) -> list[str]:
    content = (operation.get("requestBody") or {}).get("content", {})
    schema = (content.get("application/json") or {}).get("schema") or {}
    if "$ref" in schema:
        schema = _documented()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return list((schema.get("properties") or {}).keys())


def _row_counts() -> dict[str, int]:
    """Rows inserted, updated or deleted so far in the test's transaction, per table (PostgreSQL's
    own per-transaction counters: one cheap query, where counting every table was the test's cost).
    A statement rolled back with its savepoint still counts, so this is stricter than needed."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables "
            "WHERE n_tup_ins + n_tup_upd + n_tup_del > 0"
        )
        return {table: n for table, n in cursor.fetchall() if table not in UNCOUNTED}


@pytest.fixture
def hostile_world(tenant_a):
    """A tenant with one object of the common kinds, and a resolver of a path's ids to them."""
    from apps.catalog.models import Product
    from tests.billing_support import draft

    invoice = draft(tenant_a)
    node = node_in(tenant_a, hostname="hostile-node")
    pod = pod_in(tenant_a, 1, node=node)
    with tenant_a.scope():
        product = Product.objects.create(name="Hostile", type="service")
    ids = {
        "/customers/": invoice.customer_id, "/billing/invoices/": invoice.pk, "/billing/products/": product.pk,
        "/ops/servers/": node.pk, "/cloudpods/": pod.pk,
    }  # fmt: skip
    client = client_for(tenant_a.owner, tenant_a.tenant)

    def resolve(path: str) -> str:
        known = next((value for prefix, value in ids.items() if f"/api/v1{prefix}{{" in path), None)
        return re.sub(r"\{[^}]+\}", str(known or uuid.uuid4()), path)

    return client, resolve


def _check(failures: list, what: str, response, before: dict | None) -> None:
    if response.status_code >= 500:
        failures.append(f"{what}: {response.status_code}")
    elif before is not None and 400 <= response.status_code < 500:
        after = _row_counts()
        changed = {t: (before.get(t, 0), n) for t, n in after.items() if before.get(t, 0) != n}
        if changed:
            failures.append(f"{what}: {response.status_code} but wrote {changed}")


@pytest.mark.parametrize("shape", list(HOSTILE_BODIES))
def test_every_documented_body_refuses_a_hostile_body(hostile_world, shape):
    client, resolve = hostile_world
    failures, tried = [], 0
    for path, method, _operation in _operations({"POST", "PUT", "PATCH"}):
        before = _row_counts()
        response = client.generic(method, resolve(path), HOSTILE_BODIES[shape], content_type="application/json")
        _check(failures, f"{method} {path}", response, before)
        tried += 1
    assert tried > 100
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("shape", list(HOSTILE_VALUES))
def test_every_documented_field_refuses_a_hostile_value(hostile_world, shape):
    """Every property of every documented body gets the value at once: a field that crashes on it
    (a 500), or a refused request that still wrote, is listed."""
    client, resolve = hostile_world
    failures, tried = [], 0
    for path, method, operation in _operations({"POST", "PUT", "PATCH"}):
        properties = _body_properties(operation)
        if not properties:
            continue
        body = json.dumps(dict.fromkeys(properties, HOSTILE_VALUES[shape]))
        before = _row_counts()
        response = client.generic(method, resolve(path), body, content_type="application/json")
        _check(failures, f"{method} {path}", response, before)
        tried += 1
    assert tried > 80
    assert not failures, "\n".join(failures)


def test_a_body_over_the_size_limit_is_a_413_everywhere(hostile_world, settings):
    """Every operation documents the 413; each answers it once it reads the body (one that answers
    first, e.g. 404 for an unknown object, or that takes no body, such as `issue`, never reads it)."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    client, resolve = hostile_world
    body = json.dumps({"name": "x" * 5000})
    answers, failures = {}, []
    for path, method, operation in _operations({"POST", "PUT", "PATCH"}):
        before = _row_counts()
        response = client.generic(method, resolve(path), body, content_type="application/json")
        _check(failures, f"{method} {path}", response, before)
        if "413" not in operation["responses"]:
            failures.append(f"{method} {path}: 413 undocumented")
        answers[f"{method} {path}"] = response.status_code
    assert not failures, "\n".join(failures)
    assert sum(code == 413 for code in answers.values()) > 50, answers


@pytest.mark.parametrize("value", QUERY_VALUES, ids=lambda v: repr(v[:20]))
def test_every_documented_query_parameter_refuses_a_hostile_value(hostile_world, value):
    client, resolve = hostile_world
    failures, tried = [], 0
    for path, _method, operation in _operations({"GET"}):
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
        if not names:
            continue
        response = client.get(resolve(path), dict.fromkeys(names, value))
        _check(failures, f"GET {path}?{','.join(names)}", response, None)
        tried += 1
    assert tried > 40
    assert not failures, "\n".join(failures)
