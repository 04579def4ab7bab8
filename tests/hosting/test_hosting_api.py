"""Hosting accounts and to-dos through the API (every role, a foreign tenant, every route), limit
overrides refused below usage, add-ons changing their parent's limits, services becoming to-dos,
the plan config rules of the catalog, and disk usage measured on the node with ``du``."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse

from apps.billing.models import Subscription
from apps.billing.services.subscriptions import subscription_cancel, subscription_create
from apps.catalog.services import product_create
from apps.hosting import services
from apps.hosting.api import HostingAccountViewSet, TodoViewSet
from apps.hosting.models import Todo, TodoKind, TodoStatus
from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.tenancy.roles import Role
from apps.websites import services as website_services
from tests.api_mixin import ApiTestCase
from tests.billing_support import customer_of
from tests.conftest import client_for
from tests.hosting_support import PLAN, account_of, order_paid, plan_in
from tests.web_support import web_node_in, web_root  # noqa: F401  (fixtures)

D = Decimal
NO_MAIL = {**PLAN, "mailboxes": 0}


@pytest.fixture
def no_dispatch(monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


def account_in(fx, seq):
    """An account made by its plan's activation (no domain: no website, no mail domain)."""
    web_node_in(fx)
    with fx.scope():
        plan = _plan(fx) or plan_in(fx, slug=f"plan-{seq}", config=NO_MAIL)
        customer = customer_of(fx, email=f"c{seq}@example.com")
        sub = subscription_create(tenant=fx.tenant, customer=customer, product=plan, cycle="monthly", bill_now=False)
        Subscription.all_tenants.filter(pk=sub.pk).update(status="active")
        sub.refresh_from_db()
        return services.account_activate(sub)


def _plan(fx):
    from apps.catalog.models import Product

    return Product.objects.filter(type="hosting_plan").first()


@pytest.mark.usefixtures("no_dispatch")
class TestHostingAccountApi(ApiTestCase):
    viewset = HostingAccountViewSet
    basename = "hosting-account"
    roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER, "partial_update": Role.ADMIN}

    def make(self, fx, seq):
        return account_in(fx, seq)

    def update_payload(self, fx, obj, seq):
        return {"limit_overrides": {"websites": 10 + seq}}


def todo_in(fx, seq) -> Todo:
    todo, _ = services.todo_open(tenant_id=fx.tenant.pk, kind=TodoKind.SERVICE, key=f"test:{seq}",
                                 title=f"Migrate site {seq}")  # fmt: skip
    return todo


class TestTodoApi(ApiTestCase):
    viewset = TodoViewSet
    basename = "hosting-todo"
    roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER}

    def make(self, fx, seq):
        return todo_in(fx, seq)


@pytest.mark.django_db
class TestAccountLimits:
    @pytest.mark.usefixtures("no_dispatch")
    def test_usage_is_shown_and_overrides_below_usage_are_refused(self, tenant_a):
        account = account_in(tenant_a, 1)
        with tenant_a.scope():
            for n in range(2):
                website_services.website_create(tenant=tenant_a.tenant, primary_domain=f"u{n}.example",
                                                customer=account.customer)  # fmt: skip
        member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        body = member.get(reverse("hosting-account-detail", kwargs={"pk": account.pk})).json()
        assert body["usage"]["websites"] == {"used": 2, "limit": 5}
        assert body["usage"]["disk_quota_mb"] == {"used": 0, "limit": 10240}
        assert member.get(reverse("hosting-account-list")).json()["results"][0]["usage"]["websites"]["used"] == 2
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        url = reverse("hosting-account-detail", kwargs={"pk": account.pk})
        refused = admin.patch(url, {"limit_overrides": {"websites": 1}}, format="json")
        assert refused.status_code == 409 and "websites: 2 in use, the plan allows 1" in refused.json()["detail"]
        assert admin.patch(url, {"limit_overrides": {"websitez": 1}}, format="json").status_code == 400
        assert admin.patch(url, {"limit_overrides": {"websites": -1}}, format="json").status_code == 400
        ok = admin.patch(url, {"limit_overrides": {"websites": None, "disk_quota_mb": 512}}, format="json")
        assert ok.status_code == 200 and ok.json()["limits"]["websites"] is None
        assert ok.json()["usage"]["disk_quota_mb"]["limit"] == 512

    def test_an_addon_adds_to_its_parents_limits_until_cancelled(self, tenant_a, django_capture_on_commit_callbacks):
        account = account_in(tenant_a, 1)
        with tenant_a.scope():
            extra = product_create(tenant=tenant_a.tenant, data={
                "name": "Extra disk", "slug": "extra-disk", "type": "addon", "visibility": "public",
                "config": {"adds": {"disk_quota_mb": 5120, "websites": 2}},
                "prices": [{"currency": "EUR", "cycle": "monthly", "amount": D("2.00"), "setup_fee": D(0)}],
            })  # fmt: skip
        addon = order_paid(tenant_a, django_capture_on_commit_callbacks, extra, domain=None,
                           email=account.customer.email, config={"parent": str(account.subscription_id)})  # fmt: skip
        job = Job.all_tenants.get(type="subscription.activate", object_id=str(addon.pk))
        assert job.status == "SUCCEEDED", job.last_error
        account.refresh_from_db()
        assert account.limits["disk_quota_mb"] == 10240 + 5120 and account.limits["websites"] == 7
        with django_capture_on_commit_callbacks(execute=True), tenant_a.scope():
            subscription_cancel(sub=addon)
        account.refresh_from_db()
        assert account.limits["disk_quota_mb"] == 10240 and account.limits["websites"] == 5

    def test_the_catalog_refuses_a_plan_config_it_cannot_enforce(self, tenant_a):
        owner = client_for(tenant_a.owner, tenant_a.tenant)
        url = reverse("product-list")
        for config in ({"websits": 5}, {"websites": "5"}, {"websites": -1}, {"php_versions": "8.2"},
                       {"ssl": "yes"}):  # fmt: skip
            response = owner.post(url, {"name": "Bad", "type": "hosting_plan", "config": config}, format="json")
            assert response.status_code == 400, (config, response.content)
        for config in ({"adds": {"websites": "x"}}, {"adds": {"ssl": 1}}, {"extra": 1}):
            response = owner.post(url, {"name": "Bad", "type": "addon", "config": config}, format="json")
            assert response.status_code == 400, (config, response.content)
        good = owner.post(url, {"name": "Good", "type": "hosting_plan", "config": PLAN}, format="json")
        assert good.status_code == 201, good.content


@pytest.mark.django_db
def test_a_sold_service_is_a_todo_a_member_closes(tenant_a, django_capture_on_commit_callbacks):
    with tenant_a.scope():
        migration = product_create(tenant=tenant_a.tenant, data={
            "name": "Site migration", "slug": "migration", "type": "service", "visibility": "public",
            "config": {"todo": "Move the customer's site from the old host."},
            "prices": [{"currency": "EUR", "cycle": "onetime", "amount": D("49.00"), "setup_fee": D(0)}],
        })  # fmt: skip
    from apps.orders.services import order_accept, order_create

    customer = customer_of(tenant_a)
    with tenant_a.scope():
        order = order_accept(order=order_create(tenant=tenant_a.tenant, customer=customer,
                                                items=[{"product": migration, "cycle": "onetime"}]))  # fmt: skip
    assert not Todo.all_tenants.exists()  # not paid yet
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        paid = admin.post(reverse("invoice-pay", kwargs={"pk": order.invoice_id}),
                          {"amount": "49.00", "method": "cash"}, format="json")  # fmt: skip
    assert paid.status_code == 200, paid.content
    todo = Todo.all_tenants.get()
    assert todo.kind == TodoKind.SERVICE and todo.title == "Site migration" and todo.customer_id == customer.pk
    assert "Move the customer's site" in todo.detail
    staff = [m for m in mail.outbox if m.subject == "New to-do: Site migration"]  # (the other: the receipt)
    assert len(staff) == 1 and "owner@tenant-a.test" in staff[0].to
    viewer = client_for(tenant_a.users[Role.VIEWER], tenant_a.tenant)
    assert viewer.post(reverse("hosting-todo-close", kwargs={"pk": todo.pk}), {}, format="json").status_code == 403
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    closed = member.post(reverse("hosting-todo-close", kwargs={"pk": todo.pk}), {"resolution": "Done, checked."},
                         format="json")  # fmt: skip
    assert closed.status_code == 200 and closed.json()["resolution"] == "Done, checked."
    todo.refresh_from_db()
    assert todo.status == TodoStatus.CLOSED and todo.closed_by == tenant_a.users[Role.MEMBER]


@pytest.mark.django_db
def test_disk_usage_is_measured_on_the_node_and_crossing_the_quota_notifies(
    tenant_a,
    web_root,  # noqa: F811
    django_capture_on_commit_callbacks,
    monkeypatch,
):
    account = account_in(tenant_a, 1)
    with tenant_a.scope():
        services.account_set_overrides(account=account, overrides={"disk_quota_mb": 1})
    with tenant_a.scope():
        monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
        site = website_services.website_create(tenant=tenant_a.tenant, primary_domain="big.example",
                                               customer=account.customer)  # fmt: skip
    monkeypatch.undo()
    home = web_root / "web" / "www" / site.site_id / "public"
    home.mkdir(parents=True)
    (home / "blob.bin").write_bytes(b"\1" * (3 * 1024 * 1024))
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        result = services.measure_disk_all()
    assert result == {"accounts": 1}
    job = Job.all_tenants.get(type="hosting.disk_usage")
    assert job.status == "SUCCEEDED", job.last_error
    account.refresh_from_db()
    assert account.disk_used_mb >= 3 and account.over_quota_since is not None
    assert len(mail.outbox) == 1 and "over its disk quota" in mail.outbox[0].subject
    assert account_of(account.subscription).disk_used_mb == account.disk_used_mb


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch")
def test_databases_and_pods_beyond_the_plan_are_409_naming_the_limit(tenant_a):
    from apps.cloudpods import services as pod_services
    from apps.databases.models import Database
    from tests.hosting.test_databases import server_in
    from tests.pods_support import node_in

    with tenant_a.scope():
        plan = plan_in(tenant_a, slug="tiny", config={**NO_MAIL, "databases": 1, "pods": 1})
    account = account_in(tenant_a, 1)
    assert account.subscription.product_id == plan.pk
    server = server_in(tenant_a)
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    url = reverse("database-list")
    body = {"server": str(server.pk), "name": "shop", "customer": str(account.customer_id)}
    assert admin.post(url, body, format="json").status_code == 201
    second = admin.post(url, {**body, "name": "blog"}, format="json")
    assert second.status_code == 409 and "databases (1 databases allowed, 1 in use)" in second.json()["detail"]
    assert not Database.all_tenants.filter(name="blog").exists()
    assert admin.post(url, {"server": str(server.pk), "name": "own"}, format="json").status_code == 201  # no customer

    # A pod sold under one of the customer's subscriptions counts in the customer's plan.
    node_in(tenant_a)
    with tenant_a.scope():
        pod_subs = [
            subscription_create(tenant=tenant_a.tenant, customer=account.customer, product=plan_in(
                tenant_a, slug=f"pod-{n}", config={"plan": "pod-xs"}, type="cloudpod_plan"), cycle="monthly",
                bill_now=False)
            for n in (1, 2)
        ]  # fmt: skip
        pod_services.pod_create(tenant=tenant_a.tenant, name="first", plan="pod-xs", subscription=str(pod_subs[0].pk))
    refused = admin.post(reverse("cloudpod-list"), {"name": "second", "plan": "pod-xs",
                                                    "subscription": str(pod_subs[1].pk)}, format="json")  # fmt: skip
    assert refused.status_code == 409 and "pods (1 pods allowed, 1 in use)" in refused.json()["detail"]
    member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
    usage = member.get(reverse("hosting-account-detail", kwargs={"pk": account.pk})).json()["usage"]
    assert usage["databases"] == {"used": 1, "limit": 1} and usage["pods"] == {"used": 1, "limit": 1}
