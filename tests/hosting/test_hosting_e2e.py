"""Issue 18's acceptance, end to end on the real data plane: an order for a five-site hosting plan
with a domain → one invoice → paid (once recorded by staff, once by a Stripe Connect webhook replay
for the tenant's connected account) → the website answers through the real nginx, the mail domain
takes a mailbox that logs in to the real Dovecot, the zone answers from the real PowerDNS with the
tenant's nameservers; a sixth website is a 409 naming the limit; a downgrade below what is in use is
a 409; non-payment of the renewal (the billing run and dunning with the date moved on) suspends
the plan and nginx serves the suspended page; paying resumes it and the site answers again.

Jobs run in-process after each commit (the suite's eager mode), as in tests/hosting/test_hosting_plans.py.
"""

from __future__ import annotations

import imaplib
from datetime import timedelta

import pytest
from django.urls import reverse

from apps.billing.models import Invoice, InvoiceStatus, Payment, Subscription, SubscriptionStatus
from apps.billing.services.billing_run import billing_run
from apps.billing.services.dunning import dunning_run
from apps.domains.models import Domain
from apps.hosting.models import AccountStatus
from apps.mail.models import MailDomain
from apps.orders.services import order_accept, order_create
from apps.tenancy.roles import Role
from apps.websites.models import Website, WebsiteStatus
from tests.billing_support import connected, customer_of, stripe_api  # noqa: F401  (fixture)
from tests.conftest import client_for
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401  (fixtures)
from tests.e2e_support import hosting_business, pay_by_connect_replay, pay_by_staff, unique_domain
from tests.hosting_support import account_of
from tests.mail_support import dovecot, mail_node_root, mail_tmp  # noqa: F401  (fixtures)
from tests.web_support import nginx_node  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

NAMESERVERS = ["ns1.acme-hosting.example", "ns2.acme-hosting.example"]
MAILBOX_PASSWORD = "correct horse battery"


@pytest.fixture
def web_root(mail_node_root):  # noqa: F811
    """One node root for nginx and Dovecot: the local node serves both (overrides web_support's)."""
    return mail_node_root


@pytest.fixture(autouse=True)
def light_crypto(settings):
    settings.MPANEL_DKIM_KEY_BITS = 1024
    settings.MPANEL_MAIL_ARGON2_MEMORY_KB = 8192


def fresh(obj):
    return type(obj).all_tenants.get(pk=obj.pk)


@pytest.mark.parametrize("paid_by", ["staff", "stripe_connect"])
def test_a_paid_plan_with_a_domain_runs_on_the_data_plane_holds_its_limits_and_follows_payment(
    paid_by,
    tenant_a,
    nginx_node,  # noqa: F811
    dovecot,  # noqa: F811
    pdns_node_env,  # noqa: F811
    stripe_api,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    capture = django_capture_on_commit_callbacks
    fx = tenant_a
    catalog = hosting_business(fx, nameservers=NAMESERVERS)
    name = unique_domain()
    customer = customer_of(fx)
    admin = client_for(fx.users[Role.ADMIN], fx.tenant)

    # 1. The order: a hosting plan and its domain, accepted into one invoice.
    with fx.scope():
        order = order_accept(order=order_create(tenant=fx.tenant, customer=customer, items=[
            {"product": catalog["plan"], "cycle": "monthly", "config": {"domain": name}},
            {"product": catalog["domain"], "cycle": "annual", "config": {"domain": name}},
        ]))  # fmt: skip
    invoice = Invoice.all_tenants.get(pk=order.invoice_id)
    assert invoice.status == InvoiceStatus.OPEN and invoice.total == order.total > 0
    plan_sub = Subscription.all_tenants.get(order_item__order=order, product=catalog["plan"])
    domain_sub = Subscription.all_tenants.get(order_item__order=order, product=catalog["domain"])
    assert plan_sub.status == domain_sub.status == SubscriptionStatus.PENDING

    # 2. Paid: by staff, or by Stripe on the tenant's own connected account.
    if paid_by == "staff":
        with capture(execute=True):
            pay_by_staff(admin, invoice)
    else:
        account = connected(fx, stripe_api, "acct_1E2eHosting0001").account_id
        with capture(execute=True):
            answers = pay_by_connect_replay(invoice, account)
        assert answers[0]["status"] == "processed", answers
        payment = Payment.all_tenants.get(invoice=invoice)
        assert payment.provider_account == account and payment.method == "stripe"
        assert Payment.all_tenants.filter(invoice=invoice).count() == 1  # both events: one payment
    invoice = fresh(invoice)
    assert invoice.status == InvoiceStatus.PAID, invoice.status
    assert fresh(plan_sub).status == fresh(domain_sub).status == SubscriptionStatus.ACTIVE

    # 3. Provisioned: the account, its website through the real nginx.
    account = account_of(plan_sub)
    assert account.status == AccountStatus.ACTIVE and account.domain == name
    website = fresh(Website(pk=account.website_id))
    assert website.status == WebsiteStatus.ACTIVE, website.last_error
    files = reverse("hosting-files-write", kwargs={"pk": website.pk})
    written = admin.post(files, {"path": "public/index.html", "content": "<h1>shop is open</h1>"}, format="json")
    assert written.status_code == 200, written.content
    status, text, _ = nginx_node.wait_until(name, 200, contains="shop is open")
    assert status == 200 and "shop is open" in text, (status, text[:300])

    # 4. The mail domain takes a mailbox, which logs in to the real Dovecot.
    mail_domain = MailDomain.all_tenants.get(pk=account.mail_domain_id)
    assert mail_domain.name == name
    with capture(execute=True):
        box = admin.post(reverse("mailbox-list", kwargs={"domain_pk": mail_domain.pk}), {
            "local_part": "sales", "password": MAILBOX_PASSWORD, "quota_mb": 1024}, format="json")  # fmt: skip
    assert box.status_code == 201, box.content
    imap = imaplib.IMAP4("127.0.0.1", dovecot.port)
    assert imap.login(f"sales@{name}", MAILBOX_PASSWORD)[0] == "OK"
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()

    # 5. The domain: registered, its zone answering from PowerDNS with the tenant's nameservers.
    domain = Domain.all_tenants.get(subscription=domain_sub)
    assert domain.nameservers == NAMESERVERS and domain.customer_id == customer.pk
    assert pdns_node_env.ask(f"{name}.", "NS") == [f"{ns}." for ns in NAMESERVERS]
    soa = pdns_node_env.ask(f"{name}.", "SOA")
    assert soa and soa[0].startswith(f"{NAMESERVERS[0]}. "), soa

    # 6. Five websites on a five-site plan; the sixth is a 409 naming the limit, and nothing is made.
    with capture(execute=True):
        for n in range(2, 6):
            made = admin.post(reverse("website-list"), {"primary_domain": f"s{n}.{name}",
                                                        "customer": str(customer.pk)}, format="json")  # fmt: skip
            assert made.status_code == 201, made.content
    sixth = admin.post(reverse("website-list"), {"primary_domain": f"s6.{name}", "customer": str(customer.pk)},
                       format="json")  # fmt: skip
    assert sixth.status_code == 409, sixth.content
    assert sixth.json()["code"] == "plan_limit"
    assert "websites (5 websites allowed, 5 in use)" in sixth.json()["detail"]
    assert not Website.all_tenants.filter(primary_domain=f"s6.{name}").exists()
    assert nginx_node.wait_until(f"s5.{name}", 200)[0] in (200, 403)  # the fifth is served (no index yet)

    # 7. A downgrade below what is in use: 409 naming what is over; nothing changes.
    down = admin.put(reverse("subscription-detail", kwargs={"pk": plan_sub.pk}),
                     {"product": str(catalog["small"].pk)}, format="json")  # fmt: skip
    assert down.status_code == 409, down.content
    assert "websites: 5 in use, the plan allows 1" in down.json()["detail"]
    assert fresh(plan_sub).product_id == catalog["plan"].pk and account_of(plan_sub).limits["websites"] == 5

    # 8. Non-payment: the renewal invoice is not paid; dunning, run with the date moved past the grace
    # period, suspends the plan and nginx serves the suspended page.
    plan_sub = fresh(plan_sub)
    with capture(execute=True):
        billing_run(on=plan_sub.current_period_end)
    renewal = (Invoice.all_tenants.filter(customer=customer, status=InvoiceStatus.OPEN)
               .exclude(pk=invoice.pk).get())  # fmt: skip
    with capture(execute=True):
        taken = dunning_run(on=renewal.due_date + timedelta(days=14))
    assert taken.get("suspend") == 1, taken
    assert fresh(plan_sub).status == SubscriptionStatus.SUSPENDED
    assert fresh(domain_sub).status == SubscriptionStatus.ACTIVE  # the domain was paid for the year
    assert account_of(plan_sub).status == AccountStatus.SUSPENDED
    status, text, _ = nginx_node.wait_until(name, 503)
    assert status == 503 and "suspended" in text.lower() and "shop is open" not in text

    # 9. Paying the renewal resumes it: the site answers again.
    with capture(execute=True):
        pay_by_staff(admin, renewal)
    assert fresh(plan_sub).status == SubscriptionStatus.ACTIVE
    assert account_of(plan_sub).status == AccountStatus.ACTIVE
    status, text, _ = nginx_node.wait_until(name, 200, contains="shop is open")
    assert status == 200 and "shop is open" in text
