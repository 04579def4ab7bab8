"""The OpenAPI schema itself: valid OpenAPI 3, and every operation documented alike.

apps/common/schema.py (the DEFAULT_SCHEMA_CLASS) adds summaries, error answers and headers to
every view, so a module added later is covered by these tests without editing them.
"""

import json
import re

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


# --- tags, examples and descriptions (mpanel/openapi.py) ------------------------------------------

INTERNAL = re.compile(r"CONTRACT|§|\bdocs/|README|\bissue \d+", re.IGNORECASE)


def _rebase(node):
    """``node`` with its local references pointing into the document registered as ``urn:openapi``."""
    if isinstance(node, dict):
        return {k: ("urn:openapi" + v if k == "$ref" and v.startswith("#") else _rebase(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v) for v in node]
    return node


def _validator(schema, sub):
    """An OpenAPI 3.0 validator of ``sub`` that resolves references into the whole document."""
    from openapi_schema_validator import OAS30Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    registry = Registry().with_resource("urn:openapi", Resource(contents=schema, specification=DRAFT4))
    return OAS30Validator(_rebase(sub), registry=registry, format_checker=OAS30Validator.FORMAT_CHECKER)


def test_one_tag_per_module_with_a_description(schema):
    from mpanel.openapi import MODULES

    described = {tag["name"]: tag.get("description") for tag in schema["tags"]}
    assert all(described.values()), described
    assert set(described) <= {m.name for m in MODULES}
    untagged, counts = [], {}
    for method, path, operation in operations(schema):
        tags = operation.get("tags", [])
        if len(tags) != 1 or tags[0] not in described:
            untagged.append(f"{method} {path}: {tags}")
        for tag in tags:
            counts[tag] = counts.get(tag, 0) + 1
    assert not untagged, "\n".join(untagged)
    # Modules, not one bag: websites, DNS, email and databases each have their own.
    assert {"Websites", "DNS", "Email", "Databases", "CloudPods", "Invoices and payments"} <= set(counts)
    assert max(counts.values()) < 40, counts


def test_every_write_has_a_request_example_valid_against_its_own_schema(schema):
    problems, checked = [], 0
    for method, path, operation in operations(schema):
        if method not in {"POST", "PUT", "PATCH"} or "requestBody" not in operation:
            continue
        for media, content in operation["requestBody"]["content"].items():
            if media == "multipart/form-data":
                continue  # a file upload: Swagger UI offers a file picker
            examples = content.get("examples", {})
            if not examples:
                problems.append(f"{method} {path} ({media}): no request example")
                continue
            for name, example in examples.items():
                checked += 1
                for error in _validator(schema, content["schema"]).iter_errors(example["value"]):
                    problems.append(f"{method} {path} example {name}: {error.message} at {list(error.path)}")
    assert checked > 80 and not problems, "\n".join(problems)


def test_every_write_answer_has_an_example_valid_against_its_schema(schema):
    problems = []
    for method, path, operation in operations(schema):
        if method not in {"POST", "PUT", "PATCH"}:
            continue
        for code, response in operation["responses"].items():
            content = response.get("content", {}).get("application/json")
            if not code.startswith("2") or not content:
                continue
            if not content.get("examples"):
                problems.append(f"{method} {path} {code}: no example")
            for name, example in content.get("examples", {}).items():
                for error in _validator(schema, content["schema"]).iter_errors(example["value"]):
                    problems.append(f"{method} {path} {code} {name}: {error.message} at {list(error.path)}")
    assert not problems, "\n".join(problems)


def test_no_generated_noise_in_examples(schema):
    """Realistic values: no negative prices, no 'string' placeholders."""
    text = json.dumps([op.get("requestBody", {}) for _m, _p, op in operations(schema)])
    assert '"-' not in text.replace('"-----', "")
    assert '"string"' not in text


def test_every_error_answer_has_examples_in_the_error_format(schema):
    from mpanel.openapi import is_error_format

    problems = []
    for method, path, operation in operations(schema):
        for code, response in operation["responses"].items():
            content = response.get("content", {}).get("application/json")
            if code < "400" or not content or not is_error_format(content["schema"]):
                continue  # an answer of its own (a health check's 503 lists its checks)
            examples = content.get("examples", {})
            if not examples:
                problems.append(f"{method} {path} {code}: no example")
            for name, example in examples.items():
                value = example["value"]
                detail = isinstance(value, dict) and isinstance(value.get("detail"), str)
                detail = detail and set(value) <= {"detail", "code"}
                fields = isinstance(value, dict) and all(
                    isinstance(v, list) and all(isinstance(m, str) for m in v) for v in value.values()
                )
                if not (detail or fields) or (code != "400" and not detail):
                    problems.append(f"{method} {path} {code} {name}: {value}")
                for error in _validator(schema, content["schema"]).iter_errors(value):
                    problems.append(f"{method} {path} {code} {name}: {error.message}")
    assert not problems, "\n".join(problems)


def test_no_internal_references_in_descriptions(schema):
    """Descriptions are for the API's users: no notes pointing into this repository."""
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"description", "summary", "title"} and isinstance(value, str) and INTERNAL.search(value):
                    found.append(f"{where}: {INTERNAL.search(value).group(0)!r} in {value[:80]!r}")
                else:
                    walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema, "")
    assert not found, "\n".join(found)


def test_authorize_is_explained(schema):
    description = schema["info"]["description"]
    for needed in ("Authorize", "/api/v1/auth/login/", "Authorization: Bearer", "X-Tenant-ID", "mfa"):
        assert needed in description, needed
    assert schema["components"]["securitySchemes"]["bearerAuth"]["description"]
