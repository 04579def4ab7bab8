"""SSL settings through the API (`/api/v1/enterprise/ssl/settings`): MEMBER+ reads, ADMIN+ writes, by
the service the admin uses (audited); the tenant's revoke-on-delete is what a delete does when neither
the delete nor the certificate says."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.ssl import services
from apps.ssl.models import Certificate, CertificateSource, SslSettings
from apps.tenancy.roles import Role
from tests.conftest import client_for

URL = "/api/v1/enterprise/ssl/settings"
pytestmark = pytest.mark.django_db


def test_roles_and_defaults_without_writing(tenant_a):
    assert client_for(None, tenant_a.tenant).get(URL).status_code == 401
    assert client_for(tenant_a.users[Role.VIEWER], tenant_a.tenant).get(URL).status_code == 403
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    got = member.get(URL)
    assert got.status_code == 200, got.content
    assert got.json() == {"revoke_on_delete": False, "updated_at": None} and not SslSettings.all_tenants.exists()
    for role in (Role.MEMBER, Role.BILLING):
        answer = client_for(tenant_a.users[role], tenant_a.tenant).patch(URL, {"revoke_on_delete": True}, format="json")
        assert answer.status_code == 403
    assert not SslSettings.all_tenants.exists()


def test_a_change_is_audited_decides_deletes_and_leaves_other_tenants_alone(tenant_a, tenant_b):
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    answer = admin.patch(URL, {"revoke_on_delete": True}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["revoke_on_delete"] is True and answer.json()["updated_at"]
    event = AuditEvent.objects.get(action="ssl.settings.update")
    assert event.tenant_id == tenant_a.tenant.pk and event.changes == {"revoke_on_delete": [False, True]}
    # The same again changes nothing and records nothing; PUT takes the same partial body.
    assert client_for(tenant_a.users[Role.OWNER], tenant_a.tenant).put(URL, {}, format="json").status_code == 200
    assert AuditEvent.objects.filter(action="ssl.settings.update").count() == 1
    # What a delete does when the certificate does not say.
    with tenant_a.scope():
        cert = Certificate(tenant=tenant_a.tenant, names=["a.example"], source=CertificateSource.SELF_SIGNED)
        assert services.revokes_on_delete(cert) is True
        cert.revoke_on_delete = False
        assert services.revokes_on_delete(cert) is False
    assert client_for(tenant_b.users[Role.OWNER], tenant_b.tenant).get(URL).json()["revoke_on_delete"] is False


@pytest.mark.parametrize("body", [{"revoke_on_delete": "maybe"}, {"revoke_on_delete": None}, []])
def test_bad_input_is_400_and_writes_nothing(tenant_a, body):
    answer = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant).patch(URL, body, format="json")
    assert answer.status_code == 400, answer.content
    assert (
        not SslSettings.all_tenants.exists()
        and not AuditEvent.objects.filter(action__startswith="ssl.settings").exists()
    )
