"""The certificates' add page in the operators' admin: issue (ACME, through the issue job) or upload,
through the same services as the API; a refused upload is shown on its field, nothing stored, and
the key typed in is never written back into the page."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.dns import services as dns_services
from apps.jobs.models import Job
from apps.nodes.models import Node
from apps.ssl.models import Certificate, CertificateSource, CertificateStatus
from apps.tenancy.scoping import all_tenants
from tests.conftest import PASSWORD, admin_login
from tests.ssl_support import key_marker, make_bundle

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    return admin_login(client, get_user_model().objects.create_superuser(f"op{uuid.uuid4().hex[:6]}@mpanel.test",
                                                                        PASSWORD))  # fmt: skip


def add(client, tenant, **fields):
    data = {"tenant": str(tenant.pk), "website": "", "names": "", "challenge": "http-01", "certificate": "",
            "chain": "", "private_key": "", **fields}  # fmt: skip
    return client.post(reverse("admin:ssl_certificate_add") + f"?tenant={tenant.pk}", data)


def test_issue_and_upload_from_the_add_page(tenant_a, operator):
    zone_name = f"adm{uuid.uuid4().hex[:8]}.example"
    with tenant_a.scope():
        node = Node.objects.create(tenant=tenant_a.tenant, hostname="dns-adm-1", roles=["dns"], vcpu=1,
                                   memory_mb=1024, disk_gb=10, max_pods=0)  # fmt: skip
        dns_services.zone_create(tenant=tenant_a.tenant, name=zone_name, node=node)
    assert operator.get(reverse("admin:ssl_certificate_add")).status_code == 200

    # Issue: a wildcard through DNS-01; the issue job is queued (its payload: the id only).
    response = add(operator, tenant_a.tenant, names=f"*.{zone_name}\n{zone_name}", challenge="dns-01")
    assert response.status_code == 302, response.content.decode()[-2000:]
    with all_tenants():
        cert = Certificate.all_tenants.get(tenant=tenant_a.tenant, source=CertificateSource.ACME)
        job = Job.all_tenants.get(object_id=str(cert.pk), type="ssl.certificate.issue")
    assert cert.names == [f"*.{zone_name}", zone_name] and cert.status == CertificateStatus.PENDING
    assert job.payload == {"certificate": str(cert.pk)}
    # A name in no zone of the tenant: the service's refusal on the page, nothing stored.
    response = add(operator, tenant_a.tenant, names="elsewhere.example", challenge="dns-01")
    assert response.status_code == 200 and "No DNS zone of yours holds elsewhere.example" in response.content.decode()

    # Upload: stored valid, its key sealed.
    bundle = make_bundle([f"up.{zone_name}"])
    response = add(operator, tenant_a.tenant, certificate=bundle.certificate, chain=bundle.chain,
                   private_key=bundle.private_key)  # fmt: skip
    assert response.status_code == 302, response.content.decode()[-2000:]
    with all_tenants():
        uploaded = Certificate.all_tenants.get(tenant=tenant_a.tenant, source=CertificateSource.UPLOADED)
    assert uploaded.status == CertificateStatus.VALID and uploaded.names == [f"up.{zone_name}"]
    assert key_marker(bundle.private_key) not in uploaded.key_encrypted
    # Someone else's key: refused on the page, nothing stored, the key not echoed back.
    other = make_bundle([f"up.{zone_name}"])
    response = add(operator, tenant_a.tenant, certificate=bundle.certificate, chain=bundle.chain,
                   private_key=other.private_key)  # fmt: skip
    page = response.content.decode()
    assert response.status_code == 200 and "does not belong to this certificate" in page
    assert key_marker(other.private_key) not in page
    with all_tenants():
        assert Certificate.all_tenants.filter(tenant=tenant_a.tenant).count() == 2
    # Half an upload is refused by the form itself.
    response = add(operator, tenant_a.tenant, certificate=bundle.certificate)
    assert response.status_code == 200 and "needs both the certificate and its private key" in response.content.decode()
