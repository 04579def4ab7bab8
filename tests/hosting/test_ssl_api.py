"""SSL certificates through the API, panel side: the role matrix and foreign tenants (ApiTestCase),
issue requests, the upload's checks (each refusal a 400, nothing stored or installed), renew,
revoke and delete, and the key kept out of every list, answer, audit record, job and log."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.ssl import selectors, services
from apps.ssl.api import CertificateViewSet
from apps.ssl.models import Certificate, CertificateSource, CertificateStatus
from apps.tenancy.roles import Role
from apps.websites.models import Website
from tests.api_mixin import ApiTestCase
from tests.conftest import PASSWORD, client_for
from tests.ssl_support import key_marker, make_bundle
from tests.web_support import website_in


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


def uploaded(fx, seq, **extra) -> Certificate:
    bundle = make_bundle([f"cert{seq}-{fx.tenant.pk.hex[:8]}.example.com"])
    with fx.scope():
        return services.certificate_upload(tenant=fx.tenant, certificate=bundle.certificate, chain=bundle.chain,
                                           private_key=bundle.private_key, **extra)  # fmt: skip


class TestCertificateApi(ApiTestCase):
    viewset = CertificateViewSet
    basename = "ssl-certificate"
    roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }
    success = {"destroy": 202}

    def make(self, fx, seq):
        return uploaded(fx, seq)

    def create_payload(self, fx, seq):
        return {"website": str(website_in(fx, seq).pk)}

    def update_payload(self, fx, obj, seq):
        return {"hsts": not obj.hsts}


def url(cert=None, action=None) -> str:
    if cert is None:
        return reverse(f"ssl-certificate-{action or 'list'}")
    return reverse(f"ssl-certificate-{action or 'detail'}", kwargs={"pk": cert.pk})


@pytest.mark.django_db
class TestIssue:
    def test_issue_for_a_website_stores_a_pending_certificate_and_its_job(self, tenant_a):
        site = website_in(tenant_a, 1, aliases=[f"www.site1-{tenant_a.tenant.pk.hex[:8]}.example.com"])
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = admin.post(url(), {"website": str(site.pk)}, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["status"] == "pending" and body["names"] == site.domains and body["source"] == "acme"
        jobs = Job.all_tenants.filter(object_id=body["id"])
        assert [(j.type, j.payload) for j in jobs] == [("ssl.certificate.issue", {"certificate": body["id"]})]

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"names": ["other.example.com"]},  # HTTP-01 needs a website
            {"names": ["*.example.com"], "challenge": "dns-01"},  # no zone of this tenant holds it
            {"names": ["nozone.example.net"], "challenge": "dns-01"},
            {"names": ["bad name.example.com"], "challenge": "dns-01"},
            {"names": [], "challenge": "dns-01"},
            {"challenge": "tls-alpn-01"},
        ],
    )
    def test_bad_requests_are_400_and_store_nothing(self, tenant_a, body):
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = admin.post(url(), body, format="json")
        assert response.status_code == 400, response.content
        assert not Certificate.all_tenants.exists()

    def test_names_outside_the_website_and_wildcards_over_http01_are_refused(self, tenant_a):
        site = website_in(tenant_a, 2)
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        for names in (["elsewhere.example.com"], [f"*.{site.primary_domain}"]):
            response = admin.post(url(), {"website": str(site.pk), "names": names}, format="json")
            assert response.status_code == 400, response.content
        assert not Certificate.all_tenants.exists()

    def test_another_tenants_website_is_not_found(self, tenant_a, tenant_b):
        theirs = website_in(tenant_b, 3)
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = admin.post(url(), {"website": str(theirs.pk)}, format="json")
        assert response.status_code == 400
        assert not Certificate.all_tenants.exists()


@pytest.mark.django_db
class TestUpload:
    def post(self, fx, **body):
        admin = client_for(fx.users[Role.ADMIN], fx.tenant)
        return admin.post(url(action="upload"), body, format="json")

    def test_a_good_bundle_is_stored_and_installed_on_its_website(self, tenant_a):
        site = website_in(tenant_a, 4)
        bundle = make_bundle([site.primary_domain, "unrelated.example.org"])
        response = self.post(tenant_a, certificate=bundle.certificate, chain=bundle.chain,
                             private_key=bundle.private_key, website=str(site.pk))  # fmt: skip
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["source"] == "uploaded" and body["status"] == "valid" and body["website"] == str(site.pk)
        assert body["issuer"] == "CN=Test Intermediate" and body["days_left"] in (88, 89)
        cert = Certificate.all_tenants.get(pk=body["id"])
        assert cert.key_encrypted and bundle.private_key not in cert.key_encrypted
        assert Job.all_tenants.filter(object_id=str(cert.pk), type="ssl.certificate.install").count() == 1
        detail = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant).get(url(cert)).json()
        assert [c["subject"] for c in detail["chain"]] == ["CN=Test Intermediate"]

    def test_leaf_and_chain_in_one_field_are_accepted(self, tenant_a):
        bundle = make_bundle(["both.example.com"])
        response = self.post(tenant_a, certificate=bundle.certificate + bundle.chain, private_key=bundle.private_key)
        assert response.status_code == 201, response.content

    def refusals(self, fx, site):
        good = make_bundle([site.primary_domain])
        other = make_bundle([site.primary_domain])
        expired = make_bundle([site.primary_domain], days=5, not_before_days=-30)
        wrong_names = make_bundle(["someone-else.example.com"])
        return {
            "mismatched key": ({"certificate": good.certificate, "chain": good.chain,
                                "private_key": other.private_key}, "private_key"),
            "broken chain": ({"certificate": good.certificate, "chain": other.chain,
                              "private_key": good.private_key}, "chain"),
            "chain out of order": ({"certificate": good.chain, "chain": good.certificate,
                                    "private_key": good.private_key}, "private_key"),
            "expired": ({"certificate": expired.certificate, "chain": expired.chain,
                         "private_key": expired.private_key}, "certificate"),
            "wrong names": ({"certificate": wrong_names.certificate, "chain": wrong_names.chain,
                             "private_key": wrong_names.private_key}, "names"),
            "not pem": ({"certificate": "hello", "private_key": good.private_key}, "certificate"),
        }  # fmt: skip

    def test_each_bad_bundle_is_a_400_naming_its_field_and_nothing_is_installed(self, tenant_a):
        site = website_in(tenant_a, 5)
        jobs_before = Job.all_tenants.count()
        for case, (body, field) in self.refusals(tenant_a, site).items():
            response = self.post(tenant_a, website=str(site.pk), **body)
            assert response.status_code == 400, (case, response.content)
            assert field in json.dumps(response.json()), (case, response.json())
        assert not Certificate.all_tenants.exists()
        assert Job.all_tenants.count() == jobs_before
        assert not AuditEvent.objects.filter(action__startswith="ssl.").exists()

    def test_members_cannot_upload(self, tenant_a):
        bundle = make_bundle(["m.example.com"])
        member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        response = member.post(url(action="upload"), {"certificate": bundle.certificate,
                                                      "private_key": bundle.private_key}, format="json")  # fmt: skip
        assert response.status_code == 403
        assert not Certificate.all_tenants.exists()


@pytest.mark.django_db
class TestMoves:
    def test_renew_revoke_delete(self, tenant_a):
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        cert = uploaded(tenant_a, 6)
        response = admin.post(url(cert, "renew"))
        assert response.status_code == 409 and "upload" in response.json()["detail"].lower()
        with tenant_a.scope():
            Certificate.objects.filter(pk=cert.pk).update(source=CertificateSource.ACME)
        response = admin.post(url(cert, "renew"))
        assert response.status_code == 202 and response.json()["status"] == "renewing"
        assert admin.post(url(cert, "renew")).status_code == 409  # already under way
        with tenant_a.scope():
            Certificate.objects.filter(pk=cert.pk).update(status=CertificateStatus.VALID)
        response = admin.post(url(cert, "revoke"))
        assert response.status_code == 202 and response.json()["status"] == "revoked"
        assert admin.post(url(cert, "revoke")).status_code == 409
        assert Job.all_tenants.filter(object_id=str(cert.pk), type="ssl.certificate.revoke").count() == 1
        response = admin.delete(url(cert))
        assert response.status_code == 202 and response.json()["status"] == "deleted"

    def test_filters_by_status_and_expiry(self, tenant_a):
        first, second = uploaded(tenant_a, 7), uploaded(tenant_a, 8)
        with tenant_a.scope():
            Certificate.objects.filter(pk=first.pk).update(not_after=timezone.now() + timedelta(days=3))
        member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        soon = (timezone.now() + timedelta(days=10)).isoformat()
        body = member.get(url(), {"expires_before": soon}).json()
        assert [c["id"] for c in body["results"]] == [str(first.pk)]
        assert len(member.get(url(), {"status": "valid"}).json()["results"]) == 2
        assert member.get(url(), {"status": "nonsense"}).status_code == 400
        assert second  # listed by status above


@pytest.mark.django_db
def test_the_key_is_in_no_list_answer_audit_record_job_or_log(tenant_a, tenant_b, caplog):
    caplog.set_level(logging.DEBUG)
    site = website_in(tenant_a, 9)
    bundle = make_bundle([site.primary_domain])
    marker = key_marker(bundle.private_key)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    response = admin.post(url(action="upload"), {"certificate": bundle.certificate, "chain": bundle.chain,
                          "private_key": bundle.private_key, "website": str(site.pk)}, format="json")  # fmt: skip
    assert response.status_code == 201
    cert = Certificate.all_tenants.get(pk=response.json()["id"])
    answers = [
        response.content,
        admin.get(url()).content,
        admin.get(url(cert)).content,
        admin.get(url(cert, "download")).content,
        admin.patch(url(cert), {"hsts": True}, format="json").content,
        admin.get(reverse("audit-list")).content,
    ]
    assert all(marker.encode() not in a for a in answers)
    assert b"-----BEGIN CERTIFICATE-----" in answers[3]
    events = json.dumps(list(AuditEvent.objects.values()), default=str)
    jobs = json.dumps(
        list(Job.all_tenants.values("type", "payload", "result", "last_error", "error_detail")), default=str
    )
    assert "ssl.certificate.upload" in events and "ssl.certificate.install" in jobs
    assert marker not in events and marker not in jobs and marker not in caplog.text

    # The key: ADMIN+ only, after re-authenticating; another tenant's certificate is a 404.
    key_url = url(cert, "key")
    assert client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant).post(key_url, {"password": PASSWORD},
                                                                          format="json").status_code == 403  # fmt: skip
    assert admin.post(key_url, {}, format="json").status_code == 400
    assert admin.post(key_url, {"password": "wrong"}, format="json").status_code == 400
    answer = admin.post(key_url, {"password": PASSWORD}, format="json")
    assert answer.status_code == 200 and answer.json()["private_key"] == bundle.private_key
    assert AuditEvent.objects.filter(action="ssl.certificate.key_download", object_id=str(cert.pk)).exists()
    assert marker not in json.dumps(list(AuditEvent.objects.values()), default=str)
    foreign = client_for(tenant_b.users[Role.OWNER], tenant_b.tenant)
    for action in ("download", "key"):
        method = foreign.get if action == "download" else foreign.post
        assert method(url(cert, action), {"password": PASSWORD}).status_code == 404


@pytest.mark.django_db
def test_the_dashboard_lists_what_expires_within_14_days(tenant_a):
    soon, later = uploaded(tenant_a, 10), uploaded(tenant_a, 11)
    Certificate.all_tenants.filter(pk=soon.pk).update(not_after=timezone.now() + timedelta(days=5),
                                                      last_error="The CA cannot be reached")  # fmt: skip
    assert list(selectors.expiring_soon()) == [Certificate.all_tenants.get(pk=soon.pk)]
    assert later.pk not in {c.pk for c in selectors.expiring_soon()}


def acme_like(fx, seq) -> Certificate:
    """An uploaded certificate made to look issued by our CA (source, account): revocable."""
    from apps.ssl import ca
    from apps.ssl.crypto import seal
    from apps.ssl.models import AcmeAccount

    cert = uploaded(fx, seq)
    with fx.scope():
        account = AcmeAccount.objects.filter(directory=ca.directory_url()).first() or AcmeAccount.objects.create(
            tenant=fx.tenant, directory=ca.directory_url(), uri="http://acct/1", key_encrypted=seal(ca.new_key_pem())
        )
        Certificate.objects.filter(pk=cert.pk).update(source=CertificateSource.ACME, account=account)
        return Certificate.objects.get(pk=cert.pk)


@pytest.mark.django_db
class TestRevokeOnDelete:
    """The certificate's own ``revoke_on_delete`` (PATCH, ADMIN+; null: the tenant's setting)."""

    def test_roles_tenants_values_and_audit(self, tenant_a, tenant_b):
        cert = acme_like(tenant_a, 20)
        member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        foreign = client_for(tenant_b.users[Role.OWNER], tenant_b.tenant)
        shown = member.get(url(cert)).json()
        assert shown["revoke_on_delete"] is None and shown["automatic"] is False
        assert member.patch(url(cert), {"revoke_on_delete": True}, format="json").status_code == 403
        assert foreign.patch(url(cert), {"revoke_on_delete": True}, format="json").status_code == 404
        for bad in ("perhaps", 3, [True]):
            assert admin.patch(url(cert), {"revoke_on_delete": bad}, format="json").status_code == 400
        with tenant_a.scope():
            assert Certificate.objects.get(pk=cert.pk).revoke_on_delete is None
        jobs_before = Job.all_tenants.filter(object_id=str(cert.pk)).count()
        answer = admin.patch(url(cert), {"revoke_on_delete": True}, format="json")
        assert answer.status_code == 200, answer.content
        assert answer.json()["revoke_on_delete"] is True and answer.json()["hsts"] is False
        assert member.get(url(cert)).json()["revoke_on_delete"] is True
        event = AuditEvent.objects.filter(action="ssl.certificate.update", object_id=str(cert.pk)).latest("created_at")
        assert event.changes == {"revoke_on_delete": [None, True]}
        # Nothing the site serves changed: no install job.
        assert Job.all_tenants.filter(object_id=str(cert.pk)).count() == jobs_before
        assert admin.patch(url(cert), {"revoke_on_delete": None}, format="json").json()["revoke_on_delete"] is None

    def test_the_certificates_choice_wins_over_the_tenants(self, tenant_a):
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        yes, no, default = acme_like(tenant_a, 21), acme_like(tenant_a, 22), acme_like(tenant_a, 23)
        assert admin.patch(url(yes), {"revoke_on_delete": True}, format="json").status_code == 200
        assert admin.patch(url(no), {"revoke_on_delete": False}, format="json").status_code == 200
        assert admin.delete(url(yes)).status_code == 202
        assert admin.delete(url(default)).status_code == 202  # the tenant's setting: off by default
        with tenant_a.scope():
            services.settings_update(tenant=tenant_a.tenant, data={"revoke_on_delete": True})
        assert admin.delete(url(no)).status_code == 202
        payloads = {
            job.object_id: job.payload for job in Job.all_tenants.filter(type="ssl.certificate.delete")
        }  # fmt: skip
        assert payloads[str(yes.pk)].get("revoke") is True
        assert "revoke" not in payloads[str(no.pk)] and "revoke" not in payloads[str(default.pk)]
        with tenant_a.scope():
            assert Certificate.objects.get(pk=yes.pk).revoked_at is not None
            assert Certificate.objects.get(pk=no.pk).revoked_at is None

    def test_a_deleted_websites_certificate_follows_its_own_choice(self, tenant_a):
        site = website_in(tenant_a, 24)
        yes, no = acme_like(tenant_a, 25), acme_like(tenant_a, 26)
        with tenant_a.scope():
            Certificate.objects.filter(pk__in=[yes.pk, no.pk]).update(website=site)
            services.settings_update(tenant=tenant_a.tenant, data={"revoke_on_delete": True})
            Certificate.objects.filter(pk=no.pk).update(revoke_on_delete=False)
            done = services.website_deleted(Website.objects.get(pk=site.pk))
        assert [c.pk for c in done] == [yes.pk]
