"""The OpenAPI schema itself: valid OpenAPI 3, and every operation documented alike.

apps/common/schema.py (the DEFAULT_SCHEMA_CLASS) adds summaries, error answers and headers to
every view, so a module added later is covered by these tests without editing them.
"""

import json

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from openapi_spec_validator import validate
from rest_framework.test import APIClient

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        response = APIClient().get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_the_schema_generates_without_warnings_or_errors():
    GENERATOR_STATS.reset()
    SchemaGenerator().get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache, list(GENERATOR_STATS._warn_cache)
    assert not GENERATOR_STATS._error_cache, list(GENERATOR_STATS._error_cache)


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def test_the_schema_is_valid_openapi(schema):
    assert schema["openapi"].startswith("3.")
    validate(schema)  # raises OpenAPIValidationError with the path of the first problem


def test_every_operation_has_a_summary_and_a_success_body(schema):
    missing = []
    for method, path, operation in operations(schema):
        if not operation.get("summary"):
            missing.append(f"{method} {path}: no summary")
        successes = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        if not successes:
            missing.append(f"{method} {path}: no success answer")
        for code, response in successes.items():
            if code != "204" and not response.get("content"):
                missing.append(f"{method} {path}: {code} without a body")
        if method in {"PUT", "PATCH"} and "requestBody" not in operation:
            missing.append(f"{method} {path}: no request body")
    assert not missing, "\n".join(missing)


def test_every_operation_documents_its_errors(schema):
    missing = []
    for method, path, operation in operations(schema):
        codes = set(operation["responses"])
        public = operation.get("security") in (None, [], [{}]) or {} in operation.get("security", [])
        wanted = set()
        if not public:
            wanted |= {"400", "401", "403", "404"}
        if "{" in path:
            wanted |= {"400", "404"}
        if method in {"POST", "PUT", "PATCH", "DELETE"}:
            wanted |= {"400", "409"}
        if method in {"POST", "PUT", "PATCH"}:
            wanted |= {"400", "413"}  # every body is parsed under the size limit (apps/common/parsers.py)
        if method in {"POST", "PUT", "PATCH"}:
            for code in wanted & codes:
                assert operation["responses"][code].get("content"), f"{method} {path}: {code} without a body"
        if not wanted <= codes:
            missing.append(f"{method} {path}: {sorted(wanted - codes)} undocumented")
        for code in codes - {"204"}:
            if code >= "400" and not operation["responses"][code].get("content"):
                missing.append(f"{method} {path}: error {code} without a body")
    assert not missing, "\n".join(missing)


def test_throttled_operations_document_429(schema):
    for path in ("/api/v1/auth/login/", "/api/v1/products/", "/api/v1/billing/webhooks/stripe/"):
        item = schema["paths"][path]
        for method in METHODS & set(item):
            assert "429" in item[method]["responses"], f"{method} {path}"


def test_tenant_scoped_operations_document_the_tenant_header(schema):
    operation = schema["paths"]["/api/v1/customers/"]["get"]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert "X-Tenant-ID" in headers
    create = schema["paths"]["/api/v1/customers/"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in create["parameters"] if p["in"] == "header"}


def test_secrets_blanked_in_idempotency_replays_are_documented_as_nullable(schema):
    """A view's `idempotency_secret_fields` are answered once and null on a replay of the same
    Idempotency-Key (never stored): its POST answers must say so, or a replay breaks the schema
    (`make fuzz` with a larger budget found it on TOTP enrolment and API tokens)."""
    generator = SchemaGenerator()
    generator._initialise_endpoints()
    checked, wrong = 0, []
    for path, _regex, method, callback in generator.endpoints:
        secret_fields = getattr(getattr(callback, "cls", None), "idempotency_secret_fields", ())
        operation = schema["paths"].get(path, {}).get(method.lower())
        if method != "POST" or not secret_fields or operation is None:
            continue
        for status, answer in operation["responses"].items():
            ref = answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            if not status.startswith("2") or not ref:
                continue
            properties = schema["components"]["schemas"][ref.rsplit("/", 1)[1]].get("properties", {})
            for name in set(secret_fields) & set(properties):
                checked += 1
                if not properties[name].get("nullable"):
                    wrong.append(f"POST {path} {status}: {name}")
    assert checked >= 5 and not wrong, wrong
