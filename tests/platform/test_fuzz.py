"""Fuzzing our own OpenAPI schema with schemathesis, authenticated as an OWNER of a seeded tenant.

Every operation of `/api/v1/schema/`, with schemathesis' checks: no 5xx, responses (status code,
content type, body) match the schema, and no request that the schema forbids is accepted.

- ``test_fuzz_quick`` runs in `make test`: FUZZ_QUICK_EXAMPLES (default 2) generated cases per
  operation and mode, no coverage phase: about two minutes.
- ``test_fuzz`` (marked ``fuzz``, `make fuzz`): FUZZ_EXAMPLES (default 25) per operation plus
  schemathesis' coverage phase (boundary values, every enum, missing and malformed fields).

FUZZ_PATH (a regular expression) restricts both to some paths while investigating.
"""

import json
import os
import uuid

import pytest
import schemathesis
from django.conf import settings as django_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from apps.tenancy.models import Membership, Tenant
from apps.tenancy.roles import Role
from mpanel.wsgi import application
from tests.conftest import client_for, make_user

FUZZ_TENANT_ID = uuid.UUID("00000000-0000-4000-8000-00000000f022")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


# Generated in-process rather than fetched from /api/v1/schema/ (the same document): test modules
# are imported at collection, where no database access is allowed. Once for both tests: generating
# it is most of this module's collection time, which every xdist worker pays.
DOCUMENT = OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True))


def _schema(*, coverage: bool):
    schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT))
    schema.app = application
    schema.location = "/api/v1/schema/"
    if os.environ.get("FUZZ_PATH"):
        schema = schema.include(path_regex=os.environ["FUZZ_PATH"])
    schema.config.phases.coverage.enabled = coverage
    # The test sends its own credentials and tenant: schemathesis must not generate (or "negate")
    # them, or a case it believes invalid goes out valid and negative_data_rejection misfires.
    schema.config.generation.with_security_parameters = False
    schema.config.parameters["header.X-Tenant-ID"] = str(FUZZ_TENANT_ID)
    return schema


quick_schema = _schema(coverage=False)
full_schema = _schema(coverage=True)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """As Django's test client does: the WSGI app must not close the connection that holds the
    test's transaction at the end of each request."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def owner_headers(db, settings):
    settings.REST_FRAMEWORK = {
        **django_settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"login": "100000/min", "public": "100000/min"},
    }
    tenant = Tenant.objects.create(pk=FUZZ_TENANT_ID, name="Fuzzed")
    owner = make_user("owner@fuzzed.test")
    Membership.objects.create(tenant=tenant, user=owner, role=Role.OWNER)
    client = client_for(owner, tenant)
    return {"Authorization": client._credentials["HTTP_AUTHORIZATION"], "X-Tenant-ID": str(tenant.pk)}


def _settings(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        print_blob=False,
    )


@pytest.mark.django_db
@quick_schema.parametrize()
@_settings(int(os.environ.get("FUZZ_QUICK_EXAMPLES", 2)))
def test_fuzz_quick(case, owner_headers):
    case.call_and_validate(headers=owner_headers, checks=CHECKS)


@pytest.mark.fuzz
@pytest.mark.django_db
@full_schema.parametrize()
@_settings(int(os.environ.get("FUZZ_EXAMPLES", 25)))
def test_fuzz(case, owner_headers):
    case.call_and_validate(headers=owner_headers, checks=CHECKS)
