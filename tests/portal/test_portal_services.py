"""The portal's service pages and their portal API routes, on real parts where the act reaches a node:

- a CloudPod on real runc (tests/pods_support.py): restart (a new process, the rootfs kept), suspend,
  resume from the page and the API; never resumed from the portal while its service is suspended
  (non-payment); the pod's row refreshed in place;
- a database login on a real PostgreSQL (tests/databases_support.py): the new password, shown once,
  logs in once the job has run; a login shared with another customer is not this customer's;
- contacts (owner writes; every role reads), cancellation shown first, the hosting plan's usage;
- roles and isolation beyond the generated matrix (which has no pods or databases in its world).
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.models import Subscription, SubscriptionStatus
from apps.cloudpods import services as pod_services
from apps.cloudpods.models import CloudPod, PodStatus
from apps.customers.models import Contact
from apps.databases import services as db_services
from apps.databases.models import DatabaseUser
from apps.hosting.models import AccountStatus, HostingAccount
from apps.nodes.models import Node
from apps.portal.models import PortalRole
from apps.portal.service_api import (
    PortalContactViewSet,
    PortalDatabaseUserViewSet,
    PortalDatabaseViewSet,
    PortalDomainViewSet,
    PortalMailboxViewSet,
    PortalPodViewSet,
)
from apps.tenancy.roles import Role
from apps.tenancy.scoping import tenant_scope
from tests.conftest import client_for
from tests.databases_support import postgres_server  # noqa: F401
from tests.pods_support import node_in, node_root  # noqa: F401

from .support import api_client, page_client


def _activate(world) -> Subscription:
    Subscription.all_tenants.filter(pk=world.subscription.pk).update(status=SubscriptionStatus.ACTIVE)
    return Subscription.all_tenants.get(pk=world.subscription.pk)


def _pid(root, pod: CloudPod):
    from agent.runtime import NodeRuntime

    return NodeRuntime(root).pod_state(pod.container_id)


def _events(action: str, obj) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, object_id=str(obj.pk)))


def _page_url(world, name, **kwargs) -> str:
    return reverse(f"portal:{name}", kwargs={"tenant_slug": world.tenant.slug, **kwargs})


# --- pods on runc ----------------------------------------------------------------------------------------


@pytest.fixture
def pod_world(portal, node_root, tenant_a, django_capture_on_commit_callbacks):  # noqa: F811
    a1, a2, b1 = portal
    node_in(tenant_a, memory_mb=4096)
    sub = _activate(a1)
    with tenant_scope(a1.tenant), django_capture_on_commit_callbacks(execute=True):
        pod = pod_services.pod_create(tenant=a1.tenant, name="shop", plan="pod-xs", subscription=str(sub.pk))
    pod = CloudPod.all_tenants.get(pk=pod.pk)
    assert pod.status == PodStatus.RUNNING, pod.last_error
    return a1, a2, b1, pod


def test_pod_restart_suspend_resume_from_the_page(pod_world, node_root, django_capture_on_commit_callbacks):  # noqa: F811
    a1, a2, _b1, pod = pod_world
    tech = page_client(a1.users[PortalRole.TECHNICAL])
    page = tech.get(_page_url(a1, "services")).content.decode()
    assert "Restart shop" in page and "Suspend shop" in page and "live: running" in page
    assert f'data-refresh="{_page_url(a1, "pod-row", pk=pod.pk)}' in page

    before = _pid(node_root, pod)
    rootfs_marker = node_root / "bundles" / pod.container_id / "rootfs" / "kept.txt"
    rootfs_marker.write_text("written by the pod")
    with django_capture_on_commit_callbacks(execute=True):
        answer = tech.post(_page_url(a1, "pod-action", pk=pod.pk, action="restart"))
    assert answer.status_code == 302
    after = _pid(node_root, pod)
    assert after["state"] == "running" and after["pid"] != before["pid"], (before, after)
    assert rootfs_marker.read_text() == "written by the pod"  # a restart keeps what the pod wrote
    event = _events("cloudpod.restart", pod)[0]
    assert event.actor_email == a1.users[PortalRole.TECHNICAL].email and event.via == "portal"

    with django_capture_on_commit_callbacks(execute=True):
        tech.post(_page_url(a1, "pod-action", pk=pod.pk, action="suspend"))
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.SUSPENDED
    assert _pid(node_root, pod)["state"] == "paused"
    row = tech.get(_page_url(a1, "pod-row", pk=pod.pk) + "?next=/x/")
    assert row.status_code == 200 and row["Cache-Control"] == "no-store"
    assert "Resume shop" in row.content.decode() and "Restart shop" not in row.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        tech.post(_page_url(a1, "pod-action", pk=pod.pk, action="resume"))
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.RUNNING
    assert _pid(node_root, pod)["state"] == "running"

    # billing: no service acts (403 before any lookup); another customer of the tenant: 404
    billing = page_client(a1.users[PortalRole.BILLING])
    assert billing.post(_page_url(a1, "pod-action", pk=pod.pk, action="restart")).status_code == 403
    assert billing.get(_page_url(a1, "pod-row", pk=pod.pk)).status_code == 403
    other = page_client(a2.users[PortalRole.OWNER])
    assert other.post(_page_url(a2, "pod-action", pk=pod.pk, action="restart")).status_code == 404
    assert other.get(_page_url(a2, "pod-row", pk=pod.pk)).status_code == 404
    assert other.post(_page_url(a2, "pod-action", pk=pod.pk, action="bogus")).status_code == 404


def test_a_pod_suspended_with_its_service_is_never_resumed_from_the_portal(
    pod_world,
    node_root,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    a1, _a2, _b1, pod = pod_world
    with tenant_scope(a1.tenant), django_capture_on_commit_callbacks(execute=True):
        pod_services.pod_suspend(pod=pod)
    # The billing run suspended the service for non-payment (its pod is suspended with it).
    Subscription.all_tenants.filter(pk=a1.subscription.pk).update(
        status=SubscriptionStatus.SUSPENDED, suspension_reason="nonpayment"
    )
    owner = page_client(a1.users[PortalRole.OWNER])
    page = owner.get(_page_url(a1, "services")).content.decode()
    assert "Resume shop" not in page and "a payment or your provider lifts it" in page
    with django_capture_on_commit_callbacks(execute=True):
        answer = owner.post(_page_url(a1, "pod-action", pk=pod.pk, action="resume"), follow=True)
    assert "not from here" in answer.content.decode()
    api = api_client(a1.users[PortalRole.TECHNICAL])
    refused = api.post(reverse("portal-pod-resume", kwargs={"pk": pod.pk}))
    assert refused.status_code == 409 and refused.json()["code"] == "service_not_running"
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.SUSPENDED
    assert _pid(node_root, pod)["state"] == "paused"
    assert not _events("cloudpod.resume", pod)


def test_pods_in_the_portal_api(pod_world, node_root, django_capture_on_commit_callbacks):  # noqa: F811
    a1, a2, b1, pod = pod_world
    api = api_client(a1.users[PortalRole.TECHNICAL])
    listed = api.get(reverse("portal-pod-list")).json()["results"]
    assert [(p["id"], p["actions"], p["runtime"]["state"]) for p in listed] == [
        (str(pod.pk), ["restart", "suspend"], "running")
    ]
    before = _pid(node_root, pod)["pid"]
    with django_capture_on_commit_callbacks(execute=True):
        answer = api.post(reverse("portal-pod-restart", kwargs={"pk": pod.pk}))
    assert answer.status_code == 202 and answer.json()["status"] == "running"
    assert _pid(node_root, pod)["pid"] != before
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(reverse("portal-pod-suspend", kwargs={"pk": pod.pk})).status_code == 202
    assert api.post(reverse("portal-pod-restart", kwargs={"pk": pod.pk})).status_code == 409  # suspended
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(reverse("portal-pod-resume", kwargs={"pk": pod.pk})).status_code == 202
    assert _pid(node_root, pod)["state"] == "running"

    assert api_client(a1.users[PortalRole.BILLING]).get(reverse("portal-pod-list")).status_code == 403
    for other in (a2, b1):
        client = api_client(other.users[PortalRole.OWNER])
        assert client.get(reverse("portal-pod-list")).json()["results"] == []
        assert client.get(reverse("portal-pod-detail", kwargs={"pk": pod.pk})).status_code == 404
        assert client.post(reverse("portal-pod-restart", kwargs={"pk": pod.pk})).status_code == 404


# --- databases on a real PostgreSQL ------------------------------------------------------------------------


def test_database_login_password_reset_on_postgresql(
    portal,
    tenant_a,
    postgres_server,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    a1, a2, b1 = portal
    db = postgres_server
    with tenant_scope(a1.tenant), django_capture_on_commit_callbacks(execute=True):
        node = Node.objects.create(
            tenant=a1.tenant, hostname="db-1", roles=["db"], vcpu=1, memory_mb=1024, disk_gb=10, max_pods=0
        )
        server = db_services.server_create(tenant=a1.tenant, node=node, engine="postgresql", host=db.host,
                                           port=db.port, admin_user=db.admin_user,
                                           admin_password=db.admin_password)  # fmt: skip
    with tenant_scope(a1.tenant), django_capture_on_commit_callbacks(execute=True):
        mine = db_services.database_create(tenant=a1.tenant, server=server, name="shop", customer=a1.customer)
        theirs = db_services.database_create(tenant=a1.tenant, server=server, name="blog", customer=a2.customer)
        login, _first = db_services.user_create(tenant=a1.tenant, server=server, name="shop_app")
        shared, _ = db_services.user_create(tenant=a1.tenant, server=server, name="shared")
        db_services.grant_create(database=mine, user=login)
        db_services.grant_create(database=mine, user=shared)
        db_services.grant_create(database=theirs, user=shared)

    tech = page_client(a1.users[PortalRole.TECHNICAL])
    page = tech.get(_page_url(a1, "databases")).content.decode()
    assert mine.full_name in page and "PostgreSQL" in page and login.full_name in page
    assert theirs.full_name not in page and shared.full_name not in page  # shared with a2: not a1's to reset

    with django_capture_on_commit_callbacks(execute=True):
        answer = tech.post(_page_url(a1, "database-password", pk=login.pk))
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    password = answer.context["password"]
    assert password in answer.content.decode()
    assert DatabaseUser.all_tenants.get(pk=login.pk).status == "active"
    db.connect(login.full_name, password, mine.full_name).close()  # the server took it
    event = _events("database.user.rotate_password", login)[0]
    assert event.via == "portal" and event.actor_email == a1.users[PortalRole.TECHNICAL].email
    assert password not in str(event.changes)

    # the API: the same act, answered once; roles and isolation
    api = api_client(a1.users[PortalRole.OWNER])
    rows = api.get(reverse("portal-database-list")).json()["results"]
    assert [(r["full_name"], r["engine"], [u["full_name"] for u in r["users"]]) for r in rows] == [
        (mine.full_name, "postgresql", [login.full_name])
    ]
    with django_capture_on_commit_callbacks(execute=True):
        fresh = api.post(reverse("portal-database-user-password", kwargs={"pk": login.pk}))
    assert fresh.status_code == 200 and fresh.json()["user"]["id"] == str(login.pk)
    db.connect(login.full_name, fresh.json()["password"], mine.full_name).close()
    assert tech.post(_page_url(a1, "database-password", pk=shared.pk)).status_code == 404
    assert api.post(reverse("portal-database-user-password", kwargs={"pk": shared.pk})).status_code == 404
    billing = api_client(a1.users[PortalRole.BILLING])
    assert billing.post(reverse("portal-database-user-password", kwargs={"pk": login.pk})).status_code == 403
    assert page_client(a1.users[PortalRole.BILLING]).get(_page_url(a1, "databases")).status_code == 403
    for other in (a2, b1):
        client = api_client(other.users[PortalRole.OWNER])
        assert client.post(reverse("portal-database-user-password", kwargs={"pk": login.pk})).status_code == 404
        assert client.get(reverse("portal-database-detail", kwargs={"pk": mine.pk})).status_code == 404
    assert [r["full_name"] for r in api_client(a2.users[PortalRole.OWNER]).get(
        reverse("portal-database-list")).json()["results"]] == [theirs.full_name]  # fmt: skip


# --- contacts --------------------------------------------------------------------------------------------


def test_contacts_owner_writes_every_role_reads(portal):
    a1, a2, b1 = portal
    owner = page_client(a1.users[PortalRole.OWNER])
    added = owner.post(
        _page_url(a1, "contacts"), {"name": "Ana Billing", "email": "ana@a1.test", "phone": "", "role": "billing"}
    )
    assert added.status_code == 302
    contact = Contact.all_tenants.get(customer=a1.customer, email="ana@a1.test")
    assert contact.role == "billing"
    event = _events("contact.create", contact)[0]
    assert event.via == "portal" and event.actor_email == a1.users[PortalRole.OWNER].email
    bad = owner.post(_page_url(a1, "contacts"), {"name": "", "email": "not-an-address", "role": "billing"})
    assert bad.status_code == 200 and Contact.all_tenants.filter(customer=a1.customer).count() == 1

    saved = owner.post(
        _page_url(a1, "contact", pk=contact.pk), {"name": "Ana B.", "email": "ana@a1.test", "role": "technical"}
    )
    assert saved.status_code == 302
    contact.refresh_from_db()
    assert (contact.name, contact.role) == ("Ana B.", "technical")

    tech = page_client(a1.users[PortalRole.TECHNICAL])
    assert "Ana B." in tech.get(_page_url(a1, "contacts")).content.decode()
    assert tech.post(_page_url(a1, "contacts"), {"name": "X", "email": "x@a1.test", "role": "other"}).status_code == 403
    assert tech.post(_page_url(a1, "contact-remove", pk=contact.pk)).status_code == 403
    stranger = page_client(a2.users[PortalRole.OWNER])
    assert stranger.post(_page_url(a2, "contact-remove", pk=contact.pk)).status_code == 404

    # the API
    api = api_client(a1.users[PortalRole.OWNER])
    made = api.post(reverse("portal-contact-list"), {"name": "Tom", "email": "tom@a1.test"}, format="json")
    assert made.status_code == 201 and made.json()["role"] == "other"
    assert api.post(reverse("portal-contact-list"), {"name": "Tom", "email": "nope"}, format="json").status_code == 400
    url = reverse("portal-contact-detail", kwargs={"pk": made.json()["id"]})
    assert api.patch(url, {"phone": "+386 1 234 5678"}, format="json").json()["phone"] == "+386 1 234 5678"
    billing = api_client(a1.users[PortalRole.BILLING])
    assert billing.get(url).status_code == 200
    assert billing.patch(url, {"name": "Hacked"}, format="json").status_code == 403
    assert billing.delete(url).status_code == 403
    assert billing.post(reverse("portal-contact-list"), {"name": "Z", "email": "z@a1.test"}).status_code == 403
    for other in (a2, b1):
        client = api_client(other.users[PortalRole.OWNER])
        assert client.patch(url, {"name": "Hacked"}, format="json").status_code == 404
        assert client.delete(url).status_code == 404
    assert api.delete(url).status_code == 204
    assert owner.post(_page_url(a1, "contact-remove", pk=contact.pk)).status_code == 302
    assert not Contact.all_tenants.filter(customer=a1.customer).exists()
    assert _events("contact.delete", contact)[0].via == "portal"


# --- cancel, usage ---------------------------------------------------------------------------------------


def test_cancel_is_shown_before_it_is_confirmed(portal):
    a1, _a2, _b1 = portal
    billing = page_client(a1.users[PortalRole.BILLING])
    # Not paid yet: cancelling ends it now and voids its invoice.
    page = billing.get(_page_url(a1, "service-cancel-confirm", pk=a1.subscription.pk)).content.decode()
    assert "voids its invoice" in page and "Cancel now" in page

    sub = _activate(a1)
    Subscription.all_tenants.filter(pk=sub.pk).update(billed_through=sub.current_period_end)
    page = billing.get(_page_url(a1, "service-cancel-confirm", pk=sub.pk)).content.decode()
    assert "Cancel at period end" in page and "nothing is refunded" in page and "Rest of the period" in page
    assert "See what cancelling does" in billing.get(_page_url(a1, "service", pk=sub.pk)).content.decode()
    assert billing.post(_page_url(a1, "service-cancel", pk=sub.pk)).status_code == 302
    sub.refresh_from_db()
    assert sub.cancel_at_period_end and sub.status == SubscriptionStatus.ACTIVE
    page = billing.get(_page_url(a1, "service-cancel-confirm", pk=sub.pk)).content.decode()
    # Scheduled already: ending it now instead is still offered, at period end no more.
    assert "already set to end" in page and "Cancel at period end</button>" not in page


def test_the_service_page_shows_the_hosting_plans_usage(portal):
    a1, _a2, _b1 = portal
    sub = _activate(a1)
    with tenant_scope(a1.tenant):
        HostingAccount.objects.create(
            tenant=a1.tenant,
            customer=a1.customer,
            subscription=sub,
            status=AccountStatus.ACTIVE,
            limits={"websites": 5, "mailboxes": None, "databases": 2, "pods": 0, "disk_quota_mb": 1024},
            disk_used_mb=300,
        )
        Contact.objects.create(tenant=a1.tenant, customer=a1.customer, name="Unrelated", email="u@a1.test")
    page = page_client(a1.users[PortalRole.TECHNICAL]).get(_page_url(a1, "service", pk=sub.pk)).content.decode()
    assert "Usage of your plan" in page
    assert "<td>Disk (MB)</td><td>300</td><td>1024</td>" in page
    assert "<td>Mailboxes</td><td>0</td><td>unlimited</td>" in page


# --- the realm: staff credentials open none of these routes ------------------------------------------------


@pytest.mark.django_db
class TestPortalServiceRoutes:
    """The portal API's service viewsets: walked by the generated matrix of test_portal_isolation.py and by
    the tests above; here, the realm rule on each (a staff token is refused, no token is 401)."""

    covers = [
        PortalPodViewSet,
        PortalMailboxViewSet,
        PortalDomainViewSet,
        PortalDatabaseViewSet,
        PortalDatabaseUserViewSet,
        PortalContactViewSet,
    ]
    LISTS = ("pod", "mailbox", "domain", "database", "database-user", "contact")

    def test_staff_credentials_and_no_credentials_are_refused(self, portal, tenant_a):
        from rest_framework.test import APIClient

        staff = client_for(tenant_a.users[Role.OWNER], tenant_a.tenant)
        for name in self.LISTS:
            url = reverse(f"portal-{name}-list")
            assert staff.get(url).status_code in (401, 403), name
            assert APIClient().get(url).status_code == 401, name
