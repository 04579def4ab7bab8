"""Fuzzing our own OpenAPI schema with schemathesis: no operation answers 5xx to any input.

Marked ``fuzz`` and left out of `make test` for now (it takes minutes and still finds 5xx answers
to fix, see the README); `make fuzz` runs it, with FUZZ_EXAMPLES examples per operation (default 3).
"""

import os

import pytest
import schemathesis
from django.conf import settings as django_settings
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from mpanel.wsgi import application

from .conftest import client_for

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)
if os.environ.get("FUZZ_PATH"):
    schema = schema.include(path_regex=os.environ["FUZZ_PATH"])


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
def owner_headers(tenant_a):
    client = client_for(tenant_a.owner, tenant_a.tenant)
    return {
        "Authorization": client._credentials["HTTP_AUTHORIZATION"],
        "X-Tenant-ID": str(tenant_a.tenant.pk),
    }


@pytest.mark.fuzz
@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 3)),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_operation_answers_5xx(case, owner_headers):
    django_settings.REST_FRAMEWORK = {
        **django_settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"login": "100000/min", "public": "100000/min"},
    }
    case.call_and_validate(headers=owner_headers, checks=[not_a_server_error])
