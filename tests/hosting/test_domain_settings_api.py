"""Domain settings through the API (`/api/v1/domains/settings`): BILLING+ reads, ADMIN+ writes, by
the service the admin uses (audited; the EPP password and key stored encrypted, never answered)."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.domains.models import DomainSettings
from apps.tenancy.roles import Role
from tests.conftest import client_for

URL = "/api/v1/domains/settings"
pytestmark = pytest.mark.django_db


def test_roles_and_defaults_without_writing(tenant_a):
    assert client_for(None, tenant_a.tenant).get(URL).status_code == 401
    for role in (Role.VIEWER, Role.MEMBER):
        assert client_for(tenant_a.users[role], tenant_a.tenant).get(URL).status_code == 403
    billing = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
    got = billing.get(URL)
    assert got.status_code == 200, got.content
    body = got.json()
    assert body["nameservers"] == [] and body["registrar"] == "manual" and body["epp_password_set"] is False
    assert body["updated_at"] is None and not DomainSettings.objects.exists()
    assert billing.patch(URL, {"epp_port": 7000}, format="json").status_code == 403
    for role in (Role.ADMIN, Role.OWNER):
        answer = client_for(tenant_a.users[role], tenant_a.tenant).patch(URL, {"epp_port": 7000}, format="json")
        assert answer.status_code == 200, answer.content


def test_a_change_is_audited_secrets_never_answered_and_other_tenants_untouched(tenant_a, tenant_b):
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    change = {
        "nameservers": ["ns1.host.example", "ns2.host.example"], "epp_host": "EPP.Registry.Example",
        "epp_client_id": "client1", "epp_password": "s3cret-pass", "on_failed_registration": "retry",
    }  # fmt: skip
    answer = admin.put(URL, change, format="json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (
        body["nameservers"] == ["ns1.host.example", "ns2.host.example"] and body["epp_host"] == "epp.registry.example"
    )
    assert body["epp_password_set"] is True and "s3cret-pass" not in answer.content.decode()
    assert "epp_password" not in body
    event = AuditEvent.objects.get(action="domain.settings.update")
    assert event.tenant_id == tenant_a.tenant.pk and event.actor == tenant_a.users[Role.ADMIN]
    assert "s3cret-pass" not in str(event.changes)
    other = client_for(tenant_b.users[Role.ADMIN], tenant_b.tenant).get(URL).json()
    assert other["nameservers"] == [] and other["epp_password_set"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"nameservers": ["ns1.only.example"]}, "nameservers"),
        ({"registrar": "nope"}, "registrar"),
        ({"on_failed_registration": "shrug"}, "on_failed_registration"),
        ({"epp_port": 0}, "epp_port"),
        ({"epp_client_cert": "not pem"}, "epp_client_cert"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(tenant_a, body, field):
    answer = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant).patch(URL, body, format="json")
    assert answer.status_code == 400, answer.content
    assert field in answer.content.decode()
    assert not AuditEvent.objects.filter(action="domain.settings.update").exists()
