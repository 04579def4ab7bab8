"""Operators see hosting accounts (limits, usage) and to-dos in the admin, change an account's limits
through the same service as the API (refused below usage), and close a to-do with a resolution."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.hosting import services
from apps.hosting.models import HostingAccount, Todo, TodoKind, TodoStatus
from apps.jobs import services as job_services
from apps.websites import services as website_services
from tests.conftest import PASSWORD, admin_login
from tests.hosting.test_hosting_api import account_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    admin_login(client, get_user_model().objects.create_superuser("operator@mpanel.test", PASSWORD))
    return client


def test_operator_reads_accounts_changes_limits_and_closes_todos(tenant_a, operator, monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    account = account_in(tenant_a, 1)
    with tenant_a.scope():
        for n in range(2):
            website_services.website_create(tenant=tenant_a.tenant, primary_domain=f"a{n}.example",
                                            customer=account.customer)  # fmt: skip
    listing = operator.get(reverse("admin:hosting_hostingaccount_changelist"))
    assert listing.status_code == 200
    change = reverse("admin:hosting_hostingaccount_change", args=[account.pk])
    page = operator.get(change)
    assert page.status_code == 200 and "websites: 2 of 5" in page.content.decode()
    refused = operator.post(change, {"limit_overrides": '{"websites": 1}'})
    assert refused.status_code == 200 and "websites: 2 in use, the plan allows 1" in refused.content.decode()
    assert HostingAccount.all_tenants.get(pk=account.pk).limits["websites"] == 5
    assert operator.post(change, {"limit_overrides": '{"websites": 8}'}).status_code == 302
    assert HostingAccount.all_tenants.get(pk=account.pk).limits["websites"] == 8

    todo, _ = services.todo_open(tenant_id=tenant_a.tenant.pk, kind=TodoKind.SERVICE, key="admin:1",
                                 title="Install the shop")  # fmt: skip
    assert operator.get(reverse("admin:hosting_todo_changelist")).status_code == 200
    close = reverse("admin:hosting_todo_object_action", args=[todo.pk, "close"])
    assert operator.post(close, {"resolution": "Installed."}).status_code == 302
    todo = Todo.all_tenants.get(pk=todo.pk)
    assert todo.status == TodoStatus.CLOSED and todo.resolution == "Installed." and todo.closed_by.is_staff
