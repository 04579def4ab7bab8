"""Regression tests for what the schemathesis fuzz run found (see the README's "Proof under
pressure"): each was a 500 and is now a clear 4xx (or a correct 200)."""

import uuid

import pytest
from django.db import DataError, OperationalError
from django.urls import reverse

from apps.common.exceptions import exception_handler

from .conftest import client_for
from .pods_support import node_in, pod_in

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
