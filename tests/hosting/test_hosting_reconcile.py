"""The reconciliation check on the real nginx: a vhost deleted behind the panel's back is written
again and the site serves; a customer's website that no live plan covers is reported (a to-do, an
email to the tenant's staff), never deleted; a fixed problem's to-do closes itself."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from django.core import mail
from django.urls import reverse

from apps.billing.models import Subscription
from apps.billing.services.subscriptions import subscription_create, subscription_suspend
from apps.hosting import reconciliation, services
from apps.hosting.models import HostingAccount, Todo, TodoKind, TodoStatus
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.mail.models import MailDomain
from apps.tenancy.roles import Role
from apps.websites import services as website_services
from apps.websites.models import Website, WebsiteStatus
from tests.billing_support import customer_of
from tests.conftest import client_for
from tests.hosting_support import PLAN, account_of, mail_node_in, nodes_in, order_paid, plan_in
from tests.web_support import nginx_node, web_node_in, web_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def light_crypto(settings):
    settings.MPANEL_DKIM_KEY_BITS = 1024


def test_a_deleted_vhost_is_restored_and_an_orphan_site_is_reported_not_deleted(
    tenant_a,
    nginx_node,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    if shutil.which("postmap") is None:
        pytest.fail("postfix is needed: run the tests with `make test`")
    nodes_in(tenant_a)
    sub = order_paid(tenant_a, django_capture_on_commit_callbacks, plan_in(tenant_a), domain="keep.example")
    site = Website.all_tenants.get(pk=account_of(sub).website_id)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    files = reverse("hosting-files-write", kwargs={"pk": site.pk})
    assert admin.post(files, {"path": "public/index.html", "content": "kept"}, format="json").status_code == 200
    assert nginx_node.wait_until("keep.example", 200, contains="kept")[0] == 200

    # Someone removes the vhost on the node and reloads nginx: the site is gone from the web.
    vhost = nginx_node.root / "web" / "sites" / f"{site.site_id}.conf"
    assert vhost.exists()
    vhost.unlink()
    subprocess.run(["nginx", "-c", str(nginx_node.conf), "-s", "reload"], check=True, capture_output=True)
    assert nginx_node.wait_until("keep.example", 404)[0] == 404

    # A website of a customer with no hosting plan: an orphan.
    stray = customer_of(tenant_a, email="stray@example.com")
    with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
        orphan = website_services.website_create(tenant=tenant_a.tenant, primary_domain="stray.example",
                                                 customer=stray)  # fmt: skip
    assert Website.all_tenants.get(pk=orphan.pk).status == WebsiteStatus.ACTIVE

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        report = reconciliation.reconcile_tenant(tenant_a.tenant)
    assert report.checked == 1
    assert report.retried == [f"reconcile:vhost_missing:{site.pk}"]
    assert report.reported == [f"reconcile:orphan_website:{orphan.pk}"]
    # Restored: the job wrote the vhost again, nginx serves the site.
    assert vhost.exists()
    assert Job.all_tenants.filter(type="website.update", object_id=str(site.pk), status="SUCCEEDED").exists()
    status, text, _ = nginx_node.wait_until("keep.example", 200, contains="kept")
    assert status == 200 and "kept" in text
    # Reported, not deleted: the orphan still serves; a to-do and one email say so.
    assert Website.all_tenants.get(pk=orphan.pk).status == WebsiteStatus.ACTIVE
    todo = Todo.all_tenants.get(key=f"reconcile:orphan_website:{orphan.pk}")
    assert todo.kind == TodoKind.RECONCILE and todo.status == TodoStatus.OPEN and "stray.example" in todo.title
    assert len(mail.outbox) == 1 and "stray.example" in mail.outbox[0].body
    assert "admin@tenant-a.test" in mail.outbox[0].to

    # The API lists them to members; the next check closes what is fixed and keeps what is not.
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    listed = member.get(reverse("hosting-todo-list"), {"status": "open"}).json()["results"]
    assert {t["title"] for t in listed} >= {todo.title}
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        again = reconciliation.reconcile_tenant(tenant_a.tenant)
    assert again.retried == [] and again.reported == [todo.key] and again.resolved == 1
    assert mail.outbox == []  # the same finding is not emailed twice
    fixed = Todo.all_tenants.get(key=f"reconcile:vhost_missing:{site.pk}")
    assert fixed.status == TodoStatus.CLOSED and fixed.closed_by is None
    assert Todo.all_tenants.get(pk=todo.pk).status == TodoStatus.OPEN

    # A member closes the finding once a person has dealt with it.
    closed = member.post(reverse("hosting-todo-close", kwargs={"pk": todo.pk}), {"resolution": "Sold a plan."},
                         format="json")  # fmt: skip
    assert closed.status_code == 200, closed.content
    assert closed.json()["status"] == "closed" and closed.json()["closed_by"] == "member@tenant-a.test"
    assert member.post(reverse("hosting-todo-close", kwargs={"pk": todo.pk}), {}, format="json").status_code == 409


def suspended_plan(fx, monkeypatch, domain: str, config: dict):
    """A hosting plan activated for ``domain`` (job rows stored, not run), then suspended for
    non-payment with what its suspension job does: the subscription and its account."""
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)  # rows only
    plan = plan_in(fx, config=config)
    with fx.scope():
        sub = subscription_create(tenant=fx.tenant, customer=customer_of(fx), product=plan,
                                  cycle="monthly", config={"domain": domain}, bill_now=False)  # fmt: skip
        Subscription.all_tenants.filter(pk=sub.pk).update(status="active")
        sub.refresh_from_db()
        account = services.account_activate(sub)
        subscription_suspend(sub=sub, reason="nonpayment")
        services.account_suspend(sub)  # what its job does
    return sub, account


def test_a_site_serving_while_its_plan_is_suspended_is_suspended_again(tenant_a, monkeypatch):
    web_node_in(tenant_a)
    _sub, account = suspended_plan(tenant_a, monkeypatch, "late.example", {**PLAN, "mailboxes": 0})
    assert Website.all_tenants.get(pk=account.website_id).status == WebsiteStatus.SUSPENDED
    Website.all_tenants.filter(pk=account.website_id).update(status=WebsiteStatus.ACTIVE)  # behind the panel
    report = reconciliation.reconcile_tenant(tenant_a.tenant)
    assert report.retried == [f"reconcile:website_serving:{account.website_id}"]
    assert Website.all_tenants.get(pk=account.website_id).status == WebsiteStatus.SUSPENDED


def test_a_suspended_plans_mail_is_suspended_again_and_a_paid_plans_held_mail_resumed(tenant_a, monkeypatch):
    """The plan's mail follows the plan as its website does: a mail domain resumed behind the panel
    while the plan is suspended is suspended again; after the plan is paid, a domain the suspension
    still holds is resumed. Each is a to-do; nothing is deleted."""
    web_node_in(tenant_a)
    mail_node_in(tenant_a)
    sub, account = suspended_plan(tenant_a, monkeypatch, "quiet.example", PLAN)
    domain = MailDomain.all_tenants.get(pk=account.mail_domain_id)
    assert domain.suspended
    MailDomain.all_tenants.filter(pk=domain.pk).update(suspended=False)  # behind the panel
    report = reconciliation.reconcile_tenant(tenant_a.tenant)
    assert f"reconcile:mail_serving:{domain.pk}" in report.retried, report.retried
    assert MailDomain.all_tenants.get(pk=domain.pk).suspended
    assert Todo.all_tenants.filter(key=f"reconcile:mail_serving:{domain.pk}", status=TodoStatus.OPEN).exists()

    # Paid again; the resume brought the site back but not the mail: the held domain is resumed.
    Subscription.all_tenants.filter(pk=sub.pk).update(status="active")
    Website.all_tenants.filter(pk=account.website_id).update(status=WebsiteStatus.ACTIVE)
    HostingAccount.all_tenants.filter(pk=account.pk).update(suspended_sites=[])
    report = reconciliation.reconcile_tenant(tenant_a.tenant)
    assert f"reconcile:mail_suspended:{domain.pk}" in report.retried, report.retried
    assert not MailDomain.all_tenants.get(pk=domain.pk).suspended
    again = reconciliation.reconcile_tenant(tenant_a.tenant).retried  # converged: the mail needs nothing more
    assert not [key for key in again if key.startswith("reconcile:mail_")], again
