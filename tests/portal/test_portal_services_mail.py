"""A mailbox's password set from the portal (page and API) logs in to a real Dovecot (tests/mail_support.py)
once the node has the new hash; domains' auto-renew from the API; roles and isolation of both."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.domains import services as domain_services
from apps.domains.models import Domain
from apps.mail import services as mail_services
from apps.nodes.models import Node
from apps.portal.models import PortalRole
from apps.tenancy.scoping import tenant_scope
from tests.mail_support import dovecot, mail_node_root, mail_tmp  # noqa: F401

from .support import api_client, page_client

OLD = "first-mailbox-pass-1"
NEW = "second-mailbox-pass-2"


def test_mailbox_password_from_the_portal_logs_in_to_dovecot(
    portal,
    dovecot,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    a1, a2, b1 = portal
    with tenant_scope(a1.tenant), django_capture_on_commit_callbacks(execute=True):
        Node.objects.create(
            tenant=a1.tenant, hostname="mail-1", roles=["mail"], vcpu=1, memory_mb=1024, disk_gb=10, max_pods=0
        )
        md = mail_services.mail_domain_create(tenant=a1.tenant, name="a1-shop.example", customer=a1.customer)
        box = mail_services.mailbox_create(mail_domain=md, local_part="info", password=OLD)
    assert dovecot.imap_ok("info@a1-shop.example", OLD)

    tech = page_client(a1.users[PortalRole.TECHNICAL])
    assert "info@a1-shop.example" in tech.get(reverse("portal:services", args=[a1.tenant.slug])).content.decode()
    url = reverse("portal:mailbox-password", args=[a1.tenant.slug, box.pk])
    short = tech.post(url, {"password": "short"}, follow=True)
    assert "at least 10" in short.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        assert tech.post(url, {"password": NEW}).status_code == 302
    assert dovecot.settles("info@a1-shop.example", NEW, ok=True)
    assert not dovecot.imap_ok("info@a1-shop.example", OLD)
    event = AuditEvent.objects.filter(action="mail.mailbox.update", object_id=str(box.pk)).latest("created_at")
    assert event.via == "portal" and event.actor_email == a1.users[PortalRole.TECHNICAL].email
    assert NEW not in str(event.changes)

    api = api_client(a1.users[PortalRole.OWNER])
    assert [m["address"] for m in api.get(reverse("portal-mailbox-list")).json()["results"]] == ["info@a1-shop.example"]
    api_url = reverse("portal-mailbox-password", kwargs={"pk": box.pk})
    assert api.post(api_url, {"password": "short"}, format="json").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(api_url, {"password": OLD}, format="json").status_code == 204
    assert dovecot.settles("info@a1-shop.example", OLD, ok=True)

    assert api_client(a1.users[PortalRole.BILLING]).post(api_url, {"password": NEW}).status_code == 403
    for other in (a2, b1):
        client = api_client(other.users[PortalRole.OWNER])
        assert client.post(api_url, {"password": NEW}, format="json").status_code == 404
        assert client.get(reverse("portal-mailbox-list")).json()["results"] == []
    assert dovecot.imap_ok("info@a1-shop.example", OLD)


@pytest.mark.parametrize("role", [PortalRole.OWNER, PortalRole.TECHNICAL])
def test_domain_auto_renew_from_the_api(portal, role):
    a1, a2, b1 = portal
    with tenant_scope(a1.tenant):
        domain = domain_services.domain_create(tenant=a1.tenant, name="a1-brand.example", customer=a1.customer)
    api = api_client(a1.users[role])
    listed = api.get(reverse("portal-domain-list")).json()["results"]
    assert [(d["name"], d["auto_renew"]) for d in listed] == [("a1-brand.example", True)]
    url = reverse("portal-domain-auto-renew", kwargs={"pk": domain.pk})
    assert api.post(url, {}, format="json").status_code == 400
    answer = api.post(url, {"auto_renew": False}, format="json")
    assert answer.status_code == 200 and answer.json()["auto_renew"] is False
    assert Domain.all_tenants.get(pk=domain.pk).auto_renew is False
    event = AuditEvent.objects.filter(object_id=str(domain.pk)).latest("created_at")
    assert event.via == "portal" and event.actor_email == a1.users[role].email
    assert api_client(a1.users[PortalRole.BILLING]).post(url, {"auto_renew": True}).status_code == 403
    for other in (a2, b1):
        assert api_client(other.users[PortalRole.OWNER]).post(url, {"auto_renew": True}).status_code == 404
    assert Domain.all_tenants.get(pk=domain.pk).auto_renew is False
