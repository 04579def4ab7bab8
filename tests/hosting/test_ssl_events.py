"""SSL's and backups' failures are security events with their own types (labels in the API and the
admin, not raw strings): a certificate about to expire unrenewed, an issuance that gave up."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.dns import services as dns_services
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.nodes.models import Node
from apps.security.models import EventType, SecurityEvent
from apps.ssl import services as ssl_services
from apps.ssl.models import CertificateStatus
from apps.tenancy.scoping import all_tenants
from tests.conftest import client_for
from tests.ssl_support import free_port, make_bundle

pytestmark = pytest.mark.django_db(transaction=True)


def test_backup_and_ssl_types_are_labelled_members():
    for value in ("backup.drill_failed", "backup.check_failed", "ssl.certificate.expiring", "ssl.certificate.failed"):
        assert EventType(value).label and EventType(value).label != value


def test_expiry_alert_is_a_security_event_shown_with_its_label(tenant_a):
    bundle = make_bundle([f"alert{uuid.uuid4().hex[:6]}.example"], days=12)
    with tenant_a.scope():
        cert = ssl_services.certificate_upload(tenant=tenant_a.tenant, certificate=bundle.certificate,
                                               chain=bundle.chain, private_key=bundle.private_key)  # fmt: skip
    assert ssl_services.sweep()["alerted"] == 1
    event = SecurityEvent.objects.get(tenant=tenant_a.tenant, type=EventType.SSL_EXPIRING)
    assert event.data["certificate"] == str(cert.pk) and event.get_type_display() != event.type
    rows = client_for(tenant_a.owner, tenant_a.tenant).get("/api/v1/security/events/", {"type": event.type}).json()
    assert [(r["type"], r["type_label"]) for r in rows["results"]] == [(event.type, EventType.SSL_EXPIRING.label)]
    assert bundle.private_key.splitlines()[1] not in str(rows)


def test_issuance_that_gives_up_is_a_security_event(tenant_a, settings):
    settings.MPANEL_ACME_DIRECTORY = f"http://127.0.0.1:{free_port()}/dir"  # nothing listens: the CA is down
    zone_name = f"fail{uuid.uuid4().hex[:8]}.example"
    with tenant_a.scope():
        node = Node.objects.create(tenant=tenant_a.tenant, hostname="dns-ev-1", roles=["dns"], vcpu=1,
                                   memory_mb=1024, disk_gb=10, max_pods=0)  # fmt: skip
        zone = dns_services.zone_create(tenant=tenant_a.tenant, name=zone_name, node=node)
        cert = ssl_services.certificate_issue(tenant=tenant_a.tenant, names=[zone_name], challenge="dns-01")
    assert zone.name == zone_name
    with all_tenants():
        job = Job.all_tenants.get(object_id=str(cert.pk), type=ssl_services.ISSUE_JOB)
        Job.all_tenants.filter(pk=job.pk).update(attempts=job.max_attempts - 1, run_after=timezone.now())
    job_services.run_job(job.pk)
    with all_tenants():
        cert.refresh_from_db()
    assert cert.status == CertificateStatus.FAILED and "cannot be reached" in cert.last_error
    event = SecurityEvent.objects.get(tenant=tenant_a.tenant, type=EventType.SSL_ISSUANCE_FAILED)
    assert event.reason == "issuance" and event.data["names"] == [zone_name]
    assert event.created_at > timezone.now() - timedelta(minutes=5)
