"""Hosting plans end to end on the real data plane (nginx on loopback ports, Postfix maps compiled
with postmap): an order for a plan with a domain → invoice → paid by hand → the hosting account,
its website answering through nginx, its mail domain taking a mailbox; the plan's limits (a sixth
website on a five-site plan is a 409 naming the limit, through the API and the admin alike);
non-payment suspends (nginx serves the suspended page) and resume restores; a downgrade below
what is in use is refused; termination removes the account's site and mail domain."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.billing.models import SubscriptionStatus
from apps.billing.services.subscriptions import (
    subscription_cancel,
    subscription_change,
    subscription_resume,
    subscription_suspend,
)
from apps.common.exceptions import Conflict
from apps.hosting.models import AccountStatus
from apps.jobs.models import Job
from apps.mail.models import Mailbox, MailDomain
from apps.tenancy.roles import Role
from apps.websites.models import Website, WebsiteStatus
from tests.billing_support import customer_of
from tests.conftest import PASSWORD, admin_login, client_for
from tests.hosting_support import PLAN, account_of, nodes_in, order_paid, plan_in
from tests.web_support import nginx_node, web_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def light_crypto(settings):
    settings.MPANEL_DKIM_KEY_BITS = 1024
    settings.MPANEL_MAIL_ARGON2_MEMORY_KB = 8192


@pytest.fixture
def postfix_tools():
    if shutil.which("postmap") is None:
        pytest.fail("postfix is needed: run the tests with `make test` (it installs postfix)")


def site(pk) -> Website:
    return Website.all_tenants.get(pk=pk)


def test_paid_plan_serves_its_site_and_takes_mail_then_suspends_and_resumes(
    tenant_a,
    nginx_node,  # noqa: F811
    postfix_tools,
    django_capture_on_commit_callbacks,
):
    nodes_in(tenant_a)
    plan = plan_in(tenant_a)
    sub = order_paid(tenant_a, django_capture_on_commit_callbacks, plan, domain="Shop.Example")
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.ACTIVE
    job = Job.all_tenants.get(type="subscription.activate", object_id=str(sub.pk))
    assert job.status == "SUCCEEDED" and job.result["provisioned"] is True, job.result
    account = account_of(sub)
    assert account.status == AccountStatus.ACTIVE and account.domain == "shop.example"
    assert account.limits == PLAN and account.node.hostname == "web-1"
    website = site(account.website_id)
    assert website.status == WebsiteStatus.ACTIVE, website.last_error
    assert website.customer_id == sub.customer_id and account.system_user == website.system_user
    assert website.php_version == "" and website.https  # static until the customer picks a PHP version

    # The site answers through the real nginx (its files written through the file manager API).
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    files = reverse("hosting-files-write", kwargs={"pk": website.pk})
    written = admin.post(files, {"path": "public/index.html", "content": "<h1>shop is open</h1>"}, format="json")
    assert written.status_code == 200, written.content
    status, text, _ = nginx_node.wait_until("shop.example", 200, contains="shop is open")
    assert status == 200 and "shop is open" in text

    # The mail domain takes a mailbox; the node's Postfix map has it.
    mail_domain = MailDomain.all_tenants.get(pk=account.mail_domain_id)
    assert mail_domain.name == "shop.example" and mail_domain.customer_id == sub.customer_id
    with django_capture_on_commit_callbacks(execute=True):
        box = admin.post(reverse("mailbox-list", kwargs={"domain_pk": mail_domain.pk}),
                         {"local_part": "sales", "password": "correct horse battery", "quota_mb": 1024},
                         format="json")  # fmt: skip
    assert box.status_code == 201, box.content
    maps = web_root_of(nginx_node) / "mail" / "virtual_mailboxes"
    query = subprocess.run(["postmap", "-q", "sales@shop.example", f"hash:{maps}"], capture_output=True, text=True)
    assert query.stdout.strip() == "shop.example/sales/"
    # More than the plan's quota per mailbox is refused by the plan, naming the limit.
    too_big = admin.post(reverse("mailbox-list", kwargs={"domain_pk": mail_domain.pk}),
                         {"local_part": "big", "password": "correct horse battery", "quota_mb": 4096},
                         format="json")  # fmt: skip
    assert too_big.status_code == 409 and "mail_quota_mb" in too_big.json()["detail"]

    # Non-payment: the subscription is suspended, the site answers the suspended page.
    with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
        subscription_suspend(sub=sub, reason="nonpayment")
    account.refresh_from_db()
    assert account.status == AccountStatus.SUSPENDED and account.suspended_sites == [str(website.pk)]
    assert site(website.pk).status == WebsiteStatus.SUSPENDED
    status, text, _ = nginx_node.wait_until("shop.example", 503)
    assert status == 503 and "suspended" in text and "shop is open" not in text
    # Nothing new is made for a suspended plan's customer.
    refused = admin.post(reverse("website-list"), {"primary_domain": "blog.shop.example",
                                                   "customer": str(sub.customer_id)}, format="json")  # fmt: skip
    assert refused.status_code == 409 and refused.json()["code"] == "plan_suspended"

    # Resume: the site serves again.
    with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
        subscription_resume(sub=sub)
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE and account.suspended_sites == []
    status, text, _ = nginx_node.wait_until("shop.example", 200, contains="shop is open")
    assert status == 200 and "shop is open" in text

    # Termination removes the account's site (nginx forgets it) and its mail domain.
    with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
        subscription_cancel(sub=sub)
    account.refresh_from_db()
    assert account.status == AccountStatus.DELETED and account.terminated_at
    assert site(website.pk).status == WebsiteStatus.DELETED
    assert not MailDomain.all_tenants.filter(pk=mail_domain.pk).exists()
    assert not Mailbox.all_tenants.filter(mail_domain_id=mail_domain.pk).exists()
    assert nginx_node.wait_until("shop.example", 404)[0] == 404


def web_root_of(nginx) -> object:
    return nginx.root


def test_sixth_website_on_a_five_site_plan_is_409_naming_the_limit_in_api_and_admin(
    tenant_a, django_capture_on_commit_callbacks, monkeypatch, client
):
    from apps.jobs import services as job_services

    nodes_in(tenant_a)
    plan = plan_in(tenant_a, config={**PLAN, "mailboxes": 0})
    sub = order_paid(tenant_a, django_capture_on_commit_callbacks, plan, domain="five.example")
    assert account_of(sub).website_id
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)  # rows only, no nginx here
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    for n in range(2, 6):
        made = admin.post(reverse("website-list"), {"primary_domain": f"s{n}.five.example",
                                                    "customer": str(sub.customer_id)}, format="json")  # fmt: skip
        assert made.status_code == 201, made.content
    sixth = admin.post(reverse("website-list"), {"primary_domain": "s6.five.example",
                                                 "customer": str(sub.customer_id)}, format="json")  # fmt: skip
    assert sixth.status_code == 409, sixth.content
    assert sixth.json()["code"] == "plan_limit" and "websites (5 websites allowed, 5 in use)" in sixth.json()["detail"]
    assert not Website.all_tenants.filter(primary_domain="s6.five.example").exists()
    # Another customer (no plan) and the tenant's own sites are not limited by this plan.
    other = customer_of(tenant_a, email="other@example.com")
    assert admin.post(reverse("website-list"), {"primary_domain": "free.example", "customer": str(other.pk)},
                      format="json").status_code == 201  # fmt: skip

    # The admin's add page calls the same service: the same refusal, shown on the form.
    admin_login(client, get_user_model().objects.create_superuser("operator@mpanel.test", PASSWORD))
    response = client.post(reverse("admin:websites_website_add") + f"?tenant={tenant_a.tenant.pk}", {
        "tenant": str(tenant_a.tenant.pk), "primary_domain": "s6.five.example", "aliases": "",
        "customer": str(sub.customer_id), "document_root": "public", "php_version": "", "https": "on",
        "www_redirect": "none", "redirects": "[]", "error_pages": "{}",
    })  # fmt: skip
    assert response.status_code == 200
    assert "Plan limit reached: websites" in response.content.decode()
    assert not Website.all_tenants.filter(primary_domain="s6.five.example").exists()


def test_a_downgrade_below_usage_is_refused_naming_what_is_over(tenant_a, django_capture_on_commit_callbacks,
                                                                 monkeypatch):  # fmt: skip
    from apps.jobs import services as job_services

    nodes_in(tenant_a)
    big = plan_in(tenant_a, config={**PLAN, "mailboxes": 0})
    small = plan_in(tenant_a, slug="web-1", config={**PLAN, "websites": 1, "mailboxes": 0}, amount="5.00")
    sub = order_paid(tenant_a, django_capture_on_commit_callbacks, big, domain="grow.example")
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    assert admin.post(reverse("website-list"), {"primary_domain": "two.grow.example",
                      "customer": str(sub.customer_id)}, format="json").status_code == 201  # fmt: skip
    with tenant_a.scope(), pytest.raises(Conflict, match=r"websites: 2 in use, the plan allows 1"):
        subscription_change(sub=sub, product=small)
    # Through the API: the same 409, and nothing changed.
    response = admin.put(reverse("subscription-detail", kwargs={"pk": sub.pk}), {"product": str(small.pk)},
                         format="json")  # fmt: skip
    assert response.status_code == 409, response.content
    assert "websites: 2 in use, the plan allows 1" in response.json()["detail"]
    sub.refresh_from_db()
    assert sub.product_id == big.pk and account_of(sub).limits["websites"] == 5
    # An upgrade (or a downgrade that fits) changes the account's limits at once.
    roomy = plan_in(tenant_a, slug="web-3", config={**PLAN, "websites": 3, "mailboxes": 0}, amount="7.00")
    with tenant_a.scope():
        subscription_change(sub=sub, product=roomy)
    assert account_of(sub).limits["websites"] == 3
