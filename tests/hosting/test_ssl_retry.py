"""Failed automatic certificates are retried: a website of a plan with SSL whose name pebble cannot
validate yet (no A record) is ``failed``; the renewal sweep tries it again with backoff until it
succeeds (then nginx serves it), at most MPANEL_ACME_ISSUE_RETRIES times, and the tenant is alerted
once, not at each attempt."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.dns import services as dns_services
from apps.dns.models import Zone
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.nodes.models import Node
from apps.security.models import EventType, SecurityEvent
from apps.ssl import services as ssl_services
from apps.ssl.models import Certificate, CertificateStatus
from apps.tenancy.scoping import all_tenants
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401  (fixtures)
from tests.hosting.test_ssl_acme import fresh, node_in
from tests.hosting_support import PLAN, account_of, order_paid, plan_in
from tests.ssl_support import free_port, pebble, wait_served  # noqa: F401  (fixtures)
from tests.web_support import nginx_node, web_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def failure_alerts(tenant) -> tuple[int, int]:
    """(security events of a failed issuance, e-mails saying no certificate could be issued)."""
    events = SecurityEvent.objects.filter(tenant=tenant, type=EventType.SSL_ISSUANCE_FAILED).count()
    return events, sum("No certificate could be issued" in m.subject for m in mail.outbox)


def due_now(pk) -> None:
    Certificate.all_tenants.filter(pk=pk).update(retry_after=timezone.now() - timedelta(seconds=1))


def test_auto_issued_certificate_that_failed_is_retried_until_it_is_served(
    tenant_a,
    pdns_node_env,
    nginx_node,
    pebble,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.MPANEL_SSL_AUTO_ISSUE = True
    node = node_in(tenant_a)
    zone_name = f"retry{uuid.uuid4().hex[:8]}.example"
    host = f"www.{zone_name}"
    with tenant_a.scope():  # the zone is ours, but the name has no A record yet: pebble cannot resolve it
        dns_services.zone_create(tenant=tenant_a.tenant, name=zone_name, node=node)
    mail.outbox.clear()
    sub = order_paid(tenant_a, django_capture_on_commit_callbacks, plan_in(tenant_a, config={**PLAN, "mailboxes": 0}),
                     domain=host)  # fmt: skip
    site_pk = account_of(sub).website_id
    with all_tenants():
        cert = Certificate.all_tenants.get(website_id=site_pk)
    assert cert.automatic and cert.status == CertificateStatus.FAILED, cert.last_error
    assert cert.failures == 1 and cert.last_error
    first_delay = cert.retry_after - timezone.now()
    assert timedelta(seconds=settings.MPANEL_ACME_RETRY_SECONDS - 60) < first_delay
    assert first_delay <= timedelta(seconds=settings.MPANEL_ACME_RETRY_SECONDS)
    assert failure_alerts(tenant_a.tenant) == (1, 1)
    emailed = next(m for m in mail.outbox if "No certificate could be issued" in m.subject)
    assert "tried again automatically" in emailed.body
    # The API shows the attempts and the next one.
    assert cert.retry_after is not None

    # Not before its time.
    assert ssl_services.sweep()["retrying"] == 0
    assert fresh(cert.pk).failures == 1

    # Its time comes, the name still does not resolve: a second failure, a longer wait, no new alert.
    due_now(cert.pk)
    assert ssl_services.sweep()["retrying"] == 1
    again = fresh(cert.pk)
    assert again.status == CertificateStatus.FAILED and again.failures == 2
    assert again.retry_after - timezone.now() > first_delay + timedelta(seconds=settings.MPANEL_ACME_RETRY_SECONDS / 2)
    assert failure_alerts(tenant_a.tenant) == (1, 1)
    assert AuditEvent.objects.filter(action="ssl.certificate.failed", object_id=str(cert.pk)).count() == 2
    assert ssl_services.sweep()["retrying"] == 0

    # The customer points the name at us: the next attempt is issued, installed and served.
    with tenant_a.scope():
        zone = Zone.objects.get(name=zone_name)
        dns_services.record_create(zone=zone, name="www", type="A", content="127.0.0.1")
    due_now(cert.pk)
    assert ssl_services.sweep()["retrying"] == 1
    done = fresh(cert.pk)
    assert done.status == CertificateStatus.VALID, done.last_error
    assert done.failures == 0 and done.retry_after is None and done.last_error == ""
    assert done.installed_fingerprint == done.fingerprint
    served = wait_served(nginx_node, host, pebble.root_pem(), int(done.serial, 16))
    assert served.serial_number == int(done.serial, 16)
    assert failure_alerts(tenant_a.tenant) == (1, 1)
    assert ssl_services.sweep()["retrying"] == 0


def run_issue_to_the_end(cert_pk) -> None:
    """The CA is down: the job's own retries are skipped to its last attempt, which gives up."""
    with all_tenants():
        job = Job.all_tenants.filter(object_id=str(cert_pk), type=ssl_services.ISSUE_JOB).order_by("-created_at")[0]
        Job.all_tenants.filter(pk=job.pk).update(attempts=job.max_attempts - 1, run_after=timezone.now())
    job_services.run_job(job.pk)


def test_retries_stop_at_the_cap_and_hand_issued_ones_are_not_retried(tenant_a, settings, monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    settings.MPANEL_ACME_DIRECTORY = f"http://127.0.0.1:{free_port()}/dir"  # nothing listens: the CA is down
    settings.MPANEL_ACME_ISSUE_RETRIES = 2
    zone_name = f"cap{uuid.uuid4().hex[:8]}.example"
    with tenant_a.scope():
        node = Node.objects.create(tenant=tenant_a.tenant, hostname="dns-cap-1", roles=["dns"], vcpu=1,
                                   memory_mb=1024, disk_gb=10, max_pods=0)  # fmt: skip
        dns_services.zone_create(tenant=tenant_a.tenant, name=zone_name, node=node)
        auto = ssl_services.certificate_issue(tenant=tenant_a.tenant, names=[zone_name], challenge="dns-01",
                                              automatic=True)  # fmt: skip
        asked = ssl_services.certificate_issue(tenant=tenant_a.tenant, names=[f"www.{zone_name}"],
                                               challenge="dns-01")  # fmt: skip
    mail.outbox.clear()
    run_issue_to_the_end(auto.pk)
    run_issue_to_the_end(asked.pk)
    first, hand = fresh(auto.pk), fresh(asked.pk)
    assert first.status == hand.status == CertificateStatus.FAILED
    assert first.failures == 1 and first.retry_after is not None and "cannot be reached" in first.last_error
    assert hand.retry_after is None  # someone asked for it, sees it failed, and retries by hand
    assert failure_alerts(tenant_a.tenant) == (2, 2)  # one each

    due_now(auto.pk)
    due_now(asked.pk)
    assert ssl_services.sweep()["retrying"] == 1
    assert fresh(auto.pk).status == CertificateStatus.ISSUING and fresh(asked.pk).status == CertificateStatus.FAILED
    run_issue_to_the_end(auto.pk)
    capped = fresh(auto.pk)
    assert capped.status == CertificateStatus.FAILED and capped.failures == 2 and capped.retry_after is None
    assert ssl_services.sweep()["retrying"] == 0
    assert failure_alerts(tenant_a.tenant) == (2, 2)
    # "Retry" by hand still works after the cap.
    with tenant_a.scope():
        ssl_services.certificate_renew(certificate=capped)
    assert fresh(auto.pk).status == CertificateStatus.ISSUING
