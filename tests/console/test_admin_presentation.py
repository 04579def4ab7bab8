"""How the operators' admin reads: names, navigation, the dashboard's figures and the error pages
(apps/console: navigation.py, selectors.py, views.py; model Meta names; apps/common/admin.py
related_rows)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.billing.models import Invoice, Payment, PaymentStatus, Subscription, SubscriptionStatus
from apps.billing.services import invoices, payments, subscriptions
from apps.catalog.services import product_create
from apps.common.admin import related_rows
from apps.console import groups as operator_groups
from apps.console import navigation
from apps.console import views as console_views
from apps.customers.models import Customer
from apps.jobs.models import Job, JobStatus
from apps.nodes.models import Node, NodeStatus
from tests.conftest import PASSWORD, admin_login, make_tenant, make_user
from tests.pods_support import node_in

User = get_user_model()

# Every registered model's plural as an operator reads it in the navigation and on list pages.
EXPECTED_PLURALS = {
    "account.EmailAddress": "email addresses",
    "accounts.AuthToken": "auth tokens",
    "accounts.User": "users",
    "audit.AuditEvent": "audit events",
    "auth.Group": "groups",
    "axes.AccessAttempt": "access attempts",
    "axes.AccessFailureLog": "access failures",
    "axes.AccessLog": "access logs",
    "billing.BillingSettings": "billing settings",
    "billing.CheckoutSession": "checkout sessions",
    "billing.CreditNote": "credit notes",
    "billing.CreditTransaction": "credit transactions",
    "billing.DunningNotice": "dunning notices",
    "billing.Invoice": "invoices",
    "billing.NumberSequence": "number sequences",
    "billing.Payment": "payments",
    "billing.Subscription": "subscriptions",
    "billing.SubscriptionCharge": "subscription charges",
    "billing.UsageRecord": "usage records",
    "billing.WebhookEvent": "webhook events",
    "catalog.Product": "products",
    "catalog.TaxRate": "tax rates",
    "cloudpods.CloudPod": "CloudPods",
    "cloudpods.TenantQuota": "pod quotas",
    "common.IdempotencyRecord": "idempotency records",
    "customers.Contact": "contacts",
    "customers.Customer": "customers",
    "backups.BackupPolicy": "backup policies",
    "backups.BackupRepository": "backup repositories",
    "backups.Drill": "drills",
    "backups.Restore": "restores",
    "backups.Snapshot": "snapshots",
    "databases.Database": "databases",
    "databases.DatabaseGrant": "database grants",
    "databases.DatabaseServer": "database servers",
    "databases.DatabaseUser": "database users",
    # django-celery-beat's own names ("clocked" is its plural); superusers only (plumbing).
    "django_celery_beat.ClockedSchedule": "clocked",
    "django_celery_beat.CrontabSchedule": "crontabs",
    "django_celery_beat.IntervalSchedule": "intervals",
    "django_celery_beat.PeriodicTask": "periodic tasks",
    "django_celery_beat.SolarSchedule": "solar events",
    "dns.Record": "DNS records",
    "dns.Zone": "DNS zones",
    "domains.Domain": "domains",
    "jobs.Job": "jobs",
    "jobs.JobAttempt": "job attempts",
    "mail.Alias": "aliases",
    "mail.Autoresponder": "autoresponders",
    "domains.DomainSettings": "domain settings",
    "hosting.HostingAccount": "hosting accounts",
    "portal.PortalSettings": "portal settings",
    "portal.PortalUser": "portal users",
    "hosting.Todo": "to-dos",
    "mail.MailDomain": "mail domains",
    "mail.Mailbox": "mailboxes",
    "metrics.HourRollup": "hour rollups",
    "metrics.MinuteRollup": "minute rollups",
    "metrics.NodeReport": "node reports",
    "metrics.Sample": "samples",
    "names.NameDelegation": "name delegations",
    "nodes.Node": "nodes",
    "orders.Order": "orders",
    "otp_totp.TOTPDevice": "TOTP devices",
    "security.ApiToken": "API tokens",
    "security.GuardianCheckRun": "Guardian check runs",
    "security.GuardianFinding": "Guardian findings",
    "security.SecurityEvent": "security events",
    "security.SecurityPolicy": "security policies",
    "security.ShieldEvent": "Shield events",
    "security.ShieldPolicy": "Shield policies",
    "sites.Site": "sites",
    "socialaccount.SocialAccount": "social accounts",
    "socialaccount.SocialApp": "social applications",
    "socialaccount.SocialToken": "social application tokens",
    "tenancy.Invitation": "invitations",
    "tenancy.Membership": "memberships",
    "tenancy.Tenant": "tenants",
    "ssl.AcmeAccount": "ACME accounts",
    "ssl.Certificate": "certificates",
    "ssl.SslSettings": "SSL settings",
    "websites.Website": "websites",
    "websites.WebsiteDomain": "website domains",
    "whitelabel.Brand": "brands",
    "whitelabel.CustomDomain": "custom domains",
}

# What Django's default plural (name + "s") gets wrong in English.
BAD_PLURAL = [
    (re.compile(r"(ss|[^aeiou]ys|xs|chs|shs|zs|settingss)$"), "a plural that adds -s where English adds -es/-ies"),
    (re.compile(r"(?<![aeiou])ys$"), "consonant + ys: should be -ies"),
    (re.compile(r"\b(\w+)\s+\1$"), "a repeated word"),
]


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _registered() -> dict[str, object]:
    return {model._meta.label: model for model in admin.site._registry}


# --- names ---------------------------------------------------------------------------------------


def test_every_registered_model_has_its_expected_plural_name():
    found = {label: str(model._meta.verbose_name_plural) for label, model in _registered().items()}
    unexpected = set(found) - set(EXPECTED_PLURALS)
    assert not unexpected, f"new admin models: add their plural to EXPECTED_PLURALS: {sorted(unexpected)}"
    wrong = {label: (found[label], want) for label, want in EXPECTED_PLURALS.items() if found.get(label) != want}
    assert not wrong, wrong


@pytest.mark.parametrize("label", sorted(EXPECTED_PLURALS))
def test_plural_names_follow_english_rules(label):
    model = _registered().get(label)
    if model is None:
        pytest.skip(f"{label} is not registered here")
    plural = str(model._meta.verbose_name_plural)
    if label.startswith("django_celery_beat."):
        return  # a third party's names, hidden from operators
    for pattern, why in BAD_PLURAL:
        assert not pattern.search(plural), f"{label}: {plural!r}: {why}"


def test_a_subscription_and_other_rows_are_named_for_people(tenant_a):
    customer, product = _customer(tenant_a, "Zephyr Widgets"), _product(tenant_a)
    sub = _subscription(tenant_a, customer, product)
    sub = Subscription.all_tenants.get(pk=sub.pk)
    assert str(sub) == "Zephyr Widgets — Hosting"
    assert str(sub.pk) not in str(sub)
    invoice = _paid_invoice(tenant_a, customer, "19.00", timezone.now())
    payment = Payment.all_tenants.get(invoice=invoice)
    assert str(payment) == "€19.00 by bank transfer"


# --- navigation ----------------------------------------------------------------------------------


def _sections(response) -> dict[str, list[str]]:
    return {app["name"]: [m["object_name"] for m in app["models"]] for app in response.context["app_list"]}


def test_a_superuser_sees_the_operators_sections_with_every_model_once(client, db):
    root = admin_login(client, User.objects.create_superuser("root@mpanel.test", PASSWORD))
    response = root.get(reverse("admin:index"))
    sections = _sections(response)
    assert list(sections) == ["Customers and billing", "Infrastructure", "Hosting", "Security", "Platform"]
    shown = [(app["app_label"], m["model"]._meta.label) for app in response.context["app_list"] for m in app["models"]]
    labels = [label for _section, label in shown]
    assert sorted(labels) == sorted(_registered()), "every registered model, each once"
    where = {label: section for section, label in shown}
    assert where["billing.Invoice"] == where["customers.Customer"] == "customers-billing"
    assert where["nodes.Node"] == where["jobs.Job"] == "infrastructure"
    assert where["cloudpods.CloudPod"] == where["mail.Mailbox"] == where["dns.Zone"] == "hosting"
    assert where["security.SecurityEvent"] == where["audit.AuditEvent"] == "security"
    assert where["tenancy.Tenant"] == where["accounts.User"] == where["account.EmailAddress"] == "platform"
    # One section per job, no "Accounts" twice (ours and allauth's were two boxes of that name).
    html = response.content.decode()
    assert html.count(">Accounts<") == 0
    # The sidebar of every other page is the same sections.
    page = root.get(url(Customer, "changelist"))
    assert [app["name"] for app in page.context["available_apps"]] == list(sections)


def test_an_operator_does_not_see_the_plumbing(client, db):
    operator_groups.ensure_operator_groups()
    user = make_user("billing@mpanel.test", is_staff=True)
    user.groups.add(Group.objects.get(name="billing"))
    billing = admin_login(client, user)
    response = billing.get(reverse("admin:index"))
    shown = {m["model"]._meta.label for app in response.context["app_list"] for m in app["models"]}
    assert "billing.Invoice" in shown and "customers.Customer" in shown
    plumbing = {label for label in _registered() if navigation.is_plumbing(*label.split("."))}
    assert {"common.IdempotencyRecord", "sites.Site", "axes.AccessAttempt", "django_celery_beat.PeriodicTask",
            "socialaccount.SocialAccount"} <= plumbing  # fmt: skip
    assert not shown & plumbing
    html = response.content.decode()
    for word in ("Idempotency records", "Periodic tasks", "Social accounts", "Access attempts", ">Sites<"):
        assert word not in html, word
    # Also in the sidebar and on an app's own page.
    page = billing.get(url(Invoice, "changelist"))
    sidebar = {m["model"]._meta.label for app in page.context["available_apps"] for m in app["models"]}
    assert not sidebar & plumbing
    common = billing.get(reverse("admin:app_list", kwargs={"app_label": "common"}))
    assert common.status_code == 404


# --- error pages ---------------------------------------------------------------------------------


def _styled(html: str, code: int) -> None:
    assert 'id="error-page"' in html and f'data-status="{code}"' in html
    assert "admin/css/base.css" in html and "console/console.css" in html  # the admin's look
    assert 'id="environment-badge"' in html
    assert "<h1>" in html


def test_error_pages_are_styled_for_the_admin_and_json_for_the_api(client, db):
    operator_groups.ensure_operator_groups()
    user = make_user("support@mpanel.test", is_staff=True)
    user.groups.add(Group.objects.get(name="support"))
    support = admin_login(client, user)

    missing = support.get("/admin/nothing-here/at-all/")
    assert missing.status_code == 404
    _styled(missing.content.decode(), 404)
    assert "Page not found" in missing.content.decode()
    assert 'id="nav-sidebar"' in missing.content.decode()  # a logged-in operator keeps the navigation

    forbidden = support.get(url(Node, "add"))  # support may not add nodes
    assert forbidden.status_code == 403
    _styled(forbidden.content.decode(), 403)

    api = support.get("/api/v1/no-such-thing/")
    assert api.status_code == 404 and api["Content-Type"].startswith("application/json")
    assert api.json()["code"] == "not_found"

    request = RequestFactory().get("/admin/boom/")
    crashed = console_views.server_error(request)
    assert crashed.status_code == 500
    _styled(crashed.content.decode(), 500)
    api_crash = console_views.server_error(RequestFactory().get("/api/v1/boom/"))
    assert api_crash.status_code == 500 and b'"server_error"' in api_crash.content

    support.logout()
    anonymous = client.get("/no-such-page/")
    assert anonymous.status_code == 404
    _styled(anonymous.content.decode(), 404)


# --- the dashboard's figures ---------------------------------------------------------------------


def _product(fx, slug="hosting"):
    with fx.scope():
        return product_create(tenant=fx.tenant, data={
            "name": slug.title(), "slug": slug, "type": "service",
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("10.00"), "setup_fee": Decimal("0")}],
        })  # fmt: skip


def _customer(fx, name, currency="EUR"):
    with fx.scope():
        email = f"{name.lower().replace(' ', '.')}@example.com"
        return Customer.objects.create(tenant=fx.tenant, name=name, email=email, currency=currency)


def _subscription(fx, customer, product, *, status=SubscriptionStatus.ACTIVE, activated_at=None):
    with fx.scope():
        sub = subscriptions.subscription_create(
            tenant=fx.tenant, customer=customer, product=product, cycle="monthly", currency=None, bill_now=False
        )
    Subscription.all_tenants.filter(pk=sub.pk).update(status=status, activated_at=activated_at or timezone.now())
    return sub


def _open_invoice(fx, customer, amount: str) -> Invoice:
    with fx.scope():
        invoice = invoices.invoice_create(
            tenant=fx.tenant, customer=customer, lines=[{"description": "Hosting", "unit_price": amount}]
        )
        return invoices.invoice_issue(invoice=invoice)


def _paid_invoice(fx, customer, amount: str, received_at: datetime) -> Invoice:
    invoice = _open_invoice(fx, customer, amount)
    with fx.scope():
        payments.payment_record(invoice=invoice, amount=Decimal(amount), method="bank_transfer",
                                received_at=received_at)  # fmt: skip
    return invoice


def seed_business(fx, seq: int = 0) -> dict:
    """Revenue over three months, running subscriptions (one new this month, one cancelled), an
    overdue invoice, a failed payment, a failed job and an offline node."""
    now = timezone.now()
    product = _product(fx, f"hosting-{seq}")
    acme = _customer(fx, f"Acme Widgets {seq}")
    beta = _customer(fx, f"Beta Hosting Cooperative {seq}")
    _paid_invoice(fx, acme, "100.00", now - timedelta(days=62))
    _paid_invoice(fx, acme, "40.00", now - timedelta(days=31))
    _paid_invoice(fx, beta, "25.50", now)
    _subscription(fx, acme, product, activated_at=now - timedelta(days=90))
    _subscription(fx, beta, product, activated_at=now - timedelta(days=2))  # new this month
    gone = _subscription(fx, beta, product, status=SubscriptionStatus.CANCELLED, activated_at=now - timedelta(days=90))
    Subscription.all_tenants.filter(pk=gone.pk).update(cancelled_at=now - timedelta(days=5))
    late = _open_invoice(fx, beta, "12.00")
    Invoice.all_tenants.filter(pk=late.pk).update(due_date=timezone.localdate() - timedelta(days=9))
    declined = _open_invoice(fx, acme, "9.00")
    with fx.scope():
        payments.payment_record_failure(
            invoice=declined, amount=Decimal("9.00"), method="stripe", provider_ref=f"pi_declined_{seq}",
            reason="card_declined", event_time=now,
        )  # fmt: skip
        Job.objects.create(type="cloudpod.create", payload={}, status=JobStatus.FAILED, finished_at=now,
                           last_error="runc: container failed to start")  # fmt: skip
    node = node_in(fx, f"edge-{seq}.example.net")
    Node.all_tenants.filter(pk=node.pk).update(status=NodeStatus.OFFLINE, last_heartbeat_at=now - timedelta(hours=3))
    return {"late": late, "declined": declined, "node": node}


@pytest.fixture
def root(client, db):
    return admin_login(client, User.objects.create_superuser("root@mpanel.test", PASSWORD))


def test_the_dashboard_shows_revenue_mrr_overdue_and_the_to_do_lists(root, tenant_a, django_assert_max_num_queries):
    seeded = seed_business(tenant_a)
    index = reverse("admin:index")
    root.get(index)  # warm caches (content types, permissions)
    with django_assert_max_num_queries(24):
        response = root.get(index)
    assert response.status_code == 200
    sections = {s.key: s for s in response.context["dashboard"]}
    figure = {(key, f.label): f for key, s in sections.items() for f in s.figures}

    # Revenue: twelve months, oldest first, net payments per month in EUR.
    chart = sections["revenue"].chart
    assert len(chart["labels"]) == 12 and chart["money"] is True
    (eur,) = chart["datasets"]
    assert eur["label"] == "EUR" and sum(eur["values"]) == pytest.approx(165.50)
    assert eur["values"][-1] == pytest.approx(25.50)
    month = timezone.localdate().strftime("%B")
    assert figure[("revenue", f"received in {month} (EUR)")].value == "€25.50"

    # MRR: two running subscriptions now; a month ago one ran and the cancelled one still did.
    mrr = figure[("mrr", "MRR EUR")]
    assert mrr.amount == Decimal("20.00") and mrr.value == "€20.00"
    assert mrr.note == "no change vs last month"
    html = response.content.decode()
    assert "none" not in re.sub(r"<[^>]+>", " ", html).split("Monthly recurring revenue")[1][:200]

    overdue = sections["overdue"]
    assert figure[("overdue", "overdue EUR (1 invoice)")].value == "€12.00"
    assert [t.url for t in overdue.todo] == [url(Invoice, "change", seeded["late"].pk)]
    assert "9 d late" in overdue.todo[0].status

    assert [t.title for t in sections["failed-jobs"].todo] == ["cloudpod.create"]
    assert "runc: container failed to start" in sections["failed-jobs"].todo[0].detail
    review = sections["payments-review"].todo
    assert len(review) == 1 and review[0].title == "Acme Widgets 0: €9.00" and "card_declined" in review[0].detail
    assert [t.title for t in sections["nodes-offline"].todo] == ["edge-0.example.net"]

    # Counts are drawn on whole-number axes.
    assert sections["jobs"].chart["integer"] is True
    assert sections["pods"].chart is None  # no pods: no empty doughnut
    for key in ("pods", "security"):
        assert sections[key].chart is None or sections[key].chart["integer"] is True, key
    # Every to-do row and "All" link opens a page that exists.
    for section in sections.values():
        for link in [t.url for t in section.todo] + ([section.more_url] if section.more_url else []):
            assert root.get(link).status_code == 200, link


def test_the_mrr_change_counts_subscriptions_started_and_cancelled(root, tenant_a):
    product, customer = _product(tenant_a), _customer(tenant_a, "Grow")
    now = timezone.now()
    _subscription(tenant_a, customer, product, activated_at=now - timedelta(days=60))
    _subscription(tenant_a, customer, product, activated_at=now - timedelta(days=3))
    sections = {s.key: s for s in root.get(reverse("admin:index")).context["dashboard"]}
    (mrr,) = sections["mrr"].figures
    assert mrr.value == "€20.00" and mrr.note == "+€10.00 (+100%) vs last month" and mrr.tone == "good"


def test_the_dashboard_costs_the_same_queries_with_more_businesses(root, tenant_a):
    index = reverse("admin:index")
    seed_business(tenant_a, 0)
    root.get(index)
    with CaptureQueriesContext(connection) as few:
        assert root.get(index).status_code == 200
    for seq in range(1, 4):
        seed_business(make_tenant(f"More {seq}"), seq)
    with CaptureQueriesContext(connection) as many:
        assert root.get(index).status_code == 200
    assert len(many) == len(few), "\n".join(q["sql"] for q in many.captured_queries)


def test_an_empty_dashboard_says_so_in_words(root):
    html = root.get(reverse("admin:index")).content.decode()
    assert "No active subscriptions yet." in html and "No overdue invoices." in html
    assert "No failed jobs." in html and "Every node is online." in html
    assert ">none<" not in html


# --- related rows --------------------------------------------------------------------------------


def test_related_rows_show_times_statuses_and_amounts_for_people(tenant_a):
    finished = timezone.now().replace(microsecond=123456)
    with tenant_a.scope():
        job = Job.objects.create(type="cloudpod.create", payload={}, status=JobStatus.FAILED, finished_at=finished,
                                 object_type="cloudpods.cloudpod", object_id="x1")  # fmt: skip
    html = related_rows(Job, filters={"object_type": "cloudpods.cloudpod", "object_id": "x1"},
                        columns=[("Job", "type"), ("Status", "status"), ("Finished", "finished_at")])  # fmt: skip
    assert 'class="mp-badge mp-badge-bad" data-status="FAILED">Failed<' in html
    local = timezone.localtime(job.finished_at)
    assert local.strftime("%-d %b %Y, %H:%M") in html
    assert "123456" not in html and local.isoformat() not in html

    customer = _customer(tenant_a, "Rows")
    invoice = _paid_invoice(tenant_a, customer, "21.99", timezone.now())
    table = related_rows(Payment, filters={"invoice": invoice.pk}, order="-received_at",
                         columns=[("Payment", "__str__"), ("Amount", "amount"), ("Status", "status")])  # fmt: skip
    assert "€21.99" in table and "21.9900" not in table
    assert f'data-status="{PaymentStatus.SUCCEEDED}"' in table


def test_statuses_in_the_kernel_admins_are_badges(root, tenant_a):
    html = root.get(url(type(tenant_a.tenant), "changelist")).content.decode()
    assert 'class="mp-badge mp-badge-good" data-status="active">Active<' in html
