"""The operators' control panel: the dashboard, the global search, operator groups and lists that
stay fast on big tables (apps/console, apps/common/admin.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import ForeignKey
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.billing import selectors as billing_selectors
from apps.billing.models import Invoice, InvoiceStatus, Subscription, SubscriptionStatus
from apps.billing.services import invoices, subscriptions
from apps.catalog.services import product_create
from apps.cloudpods.models import CloudPod, PodStatus
from apps.common.admin import EstimatedCountPaginator
from apps.console import groups as operator_groups
from apps.console.search import global_search
from apps.customers.models import Customer
from apps.jobs import services as job_services
from apps.jobs.models import Job, JobStatus
from apps.nodes.models import Node
from apps.security.models import EventType, SecurityEvent
from apps.tenancy.models import Tenant
from tests.conftest import PASSWORD, admin_login, make_tenant, make_user
from tests.pods_support import node_in, pod_in

User = get_user_model()


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def console(client, db, monkeypatch):
    # Pod actions enqueue jobs; here only the console is under test, not the node side.
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    operator = User.objects.create_superuser("operator@mpanel.test", PASSWORD)
    admin_login(client, operator)
    client.operator = operator
    return client


def _product(fx, slug="hosting"):
    with fx.scope():
        return product_create(tenant=fx.tenant, data={
            "name": slug.title(), "slug": slug, "type": "service",
            "prices": [
                {"currency": "EUR", "cycle": "monthly", "amount": Decimal("10.00"), "setup_fee": Decimal("0")},
                {"currency": "EUR", "cycle": "annual", "amount": Decimal("120.00"), "setup_fee": Decimal("0")},
                {"currency": "USD", "cycle": "quarterly", "amount": Decimal("30.00"), "setup_fee": Decimal("0")},
            ],
        })  # fmt: skip


def _customer(fx, name, currency="EUR"):
    with fx.scope():
        return Customer.objects.create(tenant=fx.tenant, name=name, email=f"{name.lower()}@example.com",
                                       currency=currency)  # fmt: skip


def _subscription(fx, customer, product, cycle, *, quantity=1, status=SubscriptionStatus.ACTIVE, currency=None):
    with fx.scope():
        sub = subscriptions.subscription_create(
            tenant=fx.tenant, customer=customer, product=product, cycle=cycle, quantity=quantity,
            currency=currency, bill_now=False,
        )  # fmt: skip
    Subscription.all_tenants.filter(pk=sub.pk).update(status=status)
    return sub


def _overdue_invoice(fx, customer, amount: str, days_late: int = 3) -> Invoice:
    with fx.scope():
        invoice = invoices.invoice_create(
            tenant=fx.tenant, customer=customer, lines=[{"description": "Hosting", "unit_price": amount}]
        )
        invoice = invoices.invoice_issue(invoice=invoice)
    Invoice.all_tenants.filter(pk=invoice.pk).update(due_date=timezone.localdate() - timedelta(days=days_late))
    return Invoice.all_tenants.get(pk=invoice.pk)


# --- billing figures ---------------------------------------------------------------------------


def test_mrr_is_decimal_per_currency_and_monthly_whatever_the_cycle(tenant_a, tenant_b):
    product = _product(tenant_a)
    eur = _customer(tenant_a, "Eur")
    usd = _customer(tenant_a, "Usd", "USD")
    _subscription(tenant_a, eur, product, "monthly", quantity=2)  # 20.00 a month
    _subscription(tenant_a, eur, product, "annual")  # 120.00 a year = 10.00 a month
    _subscription(tenant_a, eur, product, "monthly", status=SubscriptionStatus.PAST_DUE)  # still billed: 10.00
    _subscription(tenant_a, usd, product, "quarterly", currency="USD")  # 30.00 a quarter = 10.00
    _subscription(tenant_a, eur, product, "monthly", status=SubscriptionStatus.CANCELLED)  # not counted
    _subscription(tenant_a, eur, product, "monthly", status=SubscriptionStatus.SUSPENDED)  # not counted
    other = _product(tenant_b, "other")
    _subscription(tenant_b, _customer(tenant_b, "B"), other, "monthly")  # every tenant counts: 10.00

    with CaptureQueriesContext(connection) as queries:
        mrr = billing_selectors.mrr_by_currency()
    assert mrr == {"EUR": Decimal("50.00"), "USD": Decimal("10.00")}
    assert all(isinstance(v, Decimal) for v in mrr.values())
    assert len(queries) == 1


def test_overdue_sums_open_invoices_past_due_per_currency(tenant_a):
    customer = _customer(tenant_a, "Late")
    _overdue_invoice(tenant_a, customer, "10.50")
    _overdue_invoice(tenant_a, customer, "4.50")
    _overdue_invoice(tenant_a, customer, "99.00", days_late=-5)  # not due yet
    paid = _overdue_invoice(tenant_a, customer, "7.00")
    Invoice.all_tenants.filter(pk=paid.pk).update(status=InvoiceStatus.PAID, amount_due=0)
    usd = _overdue_invoice(tenant_a, _customer(tenant_a, "Usd", "USD"), "1.00")

    overdue = billing_selectors.overdue_by_currency()
    assert overdue == {
        "EUR": {"amount": Decimal("15.00"), "count": 2},
        "USD": {"amount": usd.amount_due, "count": 1},
    }


# --- the dashboard -------------------------------------------------------------------------------


def _fill(fx, seq: int) -> None:
    """A few more rows of every kind the dashboard counts."""
    node = node_in(fx, f"node-{seq}.example.net", memory_mb=4096)
    pod_in(fx, seq, node=node)
    pod_in(fx, seq + 1000, node=node, status=PodStatus.ERROR)
    with fx.scope():
        Job.objects.create(type="test.record", payload={}, status=JobStatus.FAILED, finished_at=timezone.now())
        Job.objects.create(type="test.record", payload={})
    SecurityEvent.objects.create(type=EventType.LOGIN_FAILURE, email=f"x{seq}@example.com", tenant=fx.tenant)
    customer = _customer(fx, f"Cust{seq}")
    _overdue_invoice(fx, customer, "5.00")
    _subscription(fx, customer, _product(fx, f"p{seq}"), "monthly")


def test_dashboard_shows_every_figure_with_a_link_to_its_rows(console, tenant_a):
    _fill(tenant_a, 1)
    response = console.get(reverse("admin:index"))
    assert response.status_code == 200
    sections = {s.key: s for s in response.context["dashboard"]}
    assert set(sections) == {"revenue", "mrr", "overdue", "failed-jobs", "payments-review", "nodes-offline",
                             "certificates-expiring", "backups-failing", "tenants", "pods", "nodes", "jobs",
                             "security"}  # fmt: skip
    html = response.content.decode()
    assert "vendor/chartjs/chart.umd.min.js" in html and "console/dashboard.js" in html
    assert 'id="chart-data-pods"' in html

    figures = {(key, f.label): f for key, s in sections.items() for f in s.figures}
    # Money as people read it (apps.common.display.money), the exact Decimal beside it.
    assert figures[("mrr", "MRR EUR")].amount == Decimal("10.00")
    assert figures[("mrr", "MRR EUR")].value == "€10.00"
    assert figures[("overdue", "overdue EUR (1 invoice)")].amount == Decimal("5.00")
    assert figures[("overdue", "overdue EUR (1 invoice)")].value == "€5.00"
    assert figures[("pods", "pods")].value == 2 and figures[("pods", "error")].value == 1
    assert figures[("jobs", "failed (24h)")].value == 1 and figures[("jobs", "pending")].value == 1
    assert figures[("security", "events (24h)")].value == 1
    assert figures[("nodes", "memory MB allocated")].value == "256 / 4096 (6%)"

    # Each figure's link lists exactly the rows it counts.
    def listed(figure) -> int:
        page = console.get(figure.url)
        assert page.status_code == 200, figure.url
        assert "?e=1" not in page.get("Location", ""), figure.url  # a filter the admin refused
        return page.context["cl"].result_count

    for key in [("pods", "pods"), ("pods", "error"), ("jobs", "failed (24h)"), ("jobs", "pending"),
                ("security", "events (24h)"), ("tenants", "tenants")]:  # fmt: skip
        assert listed(figures[key]) == figures[key].value, key
    assert listed(figures[("overdue", "overdue EUR (1 invoice)")]) == 1
    assert listed(figures[("mrr", "MRR EUR")]) == 1


def test_dashboard_costs_the_same_queries_with_more_rows(console, tenant_a):
    index = reverse("admin:index")
    _fill(tenant_a, 1)
    console.get(index)  # warm caches (content types, permissions)
    with CaptureQueriesContext(connection) as few:
        assert console.get(index).status_code == 200
    for seq in range(2, 6):
        _fill(make_tenant(f"More {seq}"), seq)
    with CaptureQueriesContext(connection) as many:
        assert console.get(index).status_code == 200
    assert len(many) == len(few), "\n".join(q["sql"] for q in many.captured_queries)
    assert len(many) <= 20


def test_the_environment_is_shown_on_every_admin_page(console, client, settings, tenant_a):
    settings.MPANEL_ENVIRONMENT = "staging"
    for path in [reverse("admin:index"), url(Customer, "changelist"), url(Tenant, "change", tenant_a.tenant.pk),
                 reverse("admin:search") + "?q=a"]:  # fmt: skip
        html = console.get(path).content.decode()
        assert 'data-environment="staging"' in html and "env-staging" in html, path
        assert 'id="global-search"' in html, path
    client.logout()
    login = client.get(reverse("admin:login")).content.decode()
    assert 'data-environment="staging"' in login


# --- global search -------------------------------------------------------------------------------


@pytest.fixture
def findable(tenant_a, tenant_b):
    from apps.domains import services as domain_services

    acme = _customer(tenant_a, "Acmecorp")
    invoice = _overdue_invoice(tenant_a, acme, "12.00")
    node = node_in(tenant_b, "acme-node-7.example.net")
    pod = pod_in(tenant_b, 77, node=node)
    CloudPod.all_tenants.filter(pk=pod.pk).update(name="acmepod")
    with tenant_a.scope():
        domain = domain_services.domain_create(tenant=tenant_a.tenant, name="acme-shop.example")
    tenant = Tenant.objects.create(name="Acme Holdings")
    return {"customer": acme, "invoice": invoice, "node": node, "pod": pod, "domain": domain, "tenant": tenant}


def _titles(groups) -> dict[str, list[str]]:
    return {g["label"]: [r["title"] for r in g["results"]] for g in groups}


def test_search_finds_every_kind_across_tenants(findable):
    superuser = User.objects.create_superuser("root@mpanel.test", PASSWORD)
    found = _titles(global_search("acme", user=superuser))
    assert [t.split(" <")[0] for t in found["Customers"]] == ["Acmecorp"]
    assert found["Tenants"] == ["Acme Holdings"]
    assert found["Domains"] == ["acme-shop.example"]
    assert found["CloudPods"] == ["acmepod (running)"]
    assert found["Nodes"] == ["acme-node-7.example.net"]
    assert "Invoices" not in found
    # By email prefix, invoice number, case-insensitively, and by id.
    assert list(_titles(global_search("ACMECORP@", user=superuser))) == ["Customers"]
    number = findable["invoice"].number
    assert _titles(global_search(number.lower(), user=superuser)) == {"Invoices": [number]}
    assert _titles(global_search(str(findable["pod"].pk), user=superuser)) == {"CloudPods": ["acmepod (running)"]}
    assert global_search("zzz-nothing", user=superuser) == []


def test_search_page_links_to_the_objects_and_costs_fixed_queries(console, findable):
    search = reverse("admin:search")
    console.get(search, {"q": "acme"})
    with CaptureQueriesContext(connection) as queries:
        page = console.get(search, {"q": "acme"})
    assert page.status_code == 200
    html = page.content.decode()
    for key, model in [("customer", Customer), ("node", Node), ("pod", CloudPod)]:
        assert url(model, "change", findable[key].pk) in html
    assert len(queries) <= 15
    assert all("LIMIT" in q["sql"] for q in queries.captured_queries if "LIKE" in q["sql"])


def test_search_only_shows_what_the_operator_may_view(client, findable):
    operator_groups.ensure_operator_groups()
    viewer = make_user("viewer@mpanel.test", is_staff=True)
    assert global_search("acme", user=viewer) == []
    viewer.groups.add(Group.objects.get(name="support"))
    viewer = User.objects.get(pk=viewer.pk)  # permissions are cached per user object
    assert "Customers" in _titles(global_search("acme", user=viewer))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the search indexes are PostgreSQL's")
def test_search_queries_are_answered_by_the_prefix_indexes(db):
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # on a tiny table the planner would scan anyway
        try:
            for model, field in [(Customer, "email"), (Invoice, "number"), (Node, "hostname"), (Tenant, "name")]:
                manager = getattr(model, "all_tenants", model._default_manager)
                qs = manager.filter(**{f"{field}__istartswith": "abc"})
                sql, params = qs.query.sql_with_params()
                cursor.execute(f"EXPLAIN {sql}", params)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert "console_search_" in plan, plan
        finally:
            cursor.execute("RESET enable_seqscan")


# --- operator groups -----------------------------------------------------------------------------


def _operator(group: str, client):
    operator_groups.ensure_operator_groups()
    user = make_user(f"{group}@mpanel.test", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return admin_login(client, user)


def test_operator_groups_are_idempotent_and_exact(db):
    first = operator_groups.ensure_operator_groups()
    support = Group.objects.get(name="support")
    support.permissions.add(*Group.objects.get(name="billing").permissions.filter(codename="change_invoice"))
    assert operator_groups.ensure_operator_groups() == first  # a hand-made grant is taken back
    assert not support.permissions.filter(codename="change_invoice").exists()
    assert set(Group.objects.values_list("name", flat=True)) >= {"support", "billing", "infrastructure"}


def test_every_admin_action_is_granted_to_some_operator_group(db):
    """An action on a model no group may change is superuser-only by accident (token revoke was)."""
    from django.contrib import admin

    granted = {
        (app_label, codename)
        for group in operator_groups.GRANTS
        for app_label, codename in operator_groups.wanted_permissions(group)
    }
    orphans = []
    for model, model_admin in admin.site._registry.items():
        if not model.__module__.startswith("apps."):
            continue
        opts = model._meta
        for name in model_admin.actions or ():
            func = getattr(model_admin, name) if isinstance(name, str) else name
            for perm in getattr(func, "allowed_permissions", ()):
                action = "change" if perm == "operate" else perm
                if (opts.app_label, f"{action}_{opts.model_name}") not in granted:
                    orphans.append(f"{opts.label_lower}: {getattr(func, '__name__', name)} needs {action}")
    assert not orphans, orphans


def test_the_management_command_sets_up_the_groups(db):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("operator_groups", stdout=out)
    assert "group support:" in out.getvalue() and "group infrastructure:" in out.getvalue()


def test_a_support_operator_cannot_void_an_invoice(client, tenant_a):
    invoice = _overdue_invoice(tenant_a, _customer(tenant_a, "Sup"), "10.00")
    support = _operator("support", client)
    page = support.get(url(Invoice, "changelist"))
    assert page.status_code == 200  # support sees invoices…
    form = page.context["action_form"]
    assert form is None or "void" not in str(form.fields["action"].choices)
    support.post(
        url(Invoice, "changelist"), {"action": "void", "_selected_action": [str(invoice.pk)], "confirmed": "yes"}
    )
    assert Invoice.all_tenants.get(pk=invoice.pk).status == InvoiceStatus.OPEN  # …but cannot void them


def test_a_billing_operator_voids_invoices_but_cannot_suspend_a_pod(client, tenant_a, monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    invoice = _overdue_invoice(tenant_a, _customer(tenant_a, "Bil"), "10.00")
    pod = pod_in(tenant_a, 5)
    billing = _operator("billing", client)
    response = billing.post(
        url(Invoice, "changelist"), {"action": "void", "_selected_action": [str(invoice.pk)], "confirmed": "yes"}
    )
    assert response.status_code == 302
    assert Invoice.all_tenants.get(pk=invoice.pk).status == InvoiceStatus.VOID

    page = billing.get(url(CloudPod, "changelist"))
    assert page.status_code == 200
    assert page.context["action_form"] is None or "suspend_pods" not in str(
        page.context["action_form"].fields["action"].choices
    )
    billing.post(url(CloudPod, "changelist"), {"action": "suspend_pods", "_selected_action": [str(pod.pk)]})
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.RUNNING
    assert not Job.all_tenants.filter(type="cloudpod.suspend").exists()


def test_an_infrastructure_operator_suspends_pods_and_retries_jobs_but_not_invoices(client, tenant_a, monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    pod = pod_in(tenant_a, 6)
    invoice = _overdue_invoice(tenant_a, _customer(tenant_a, "Inf"), "10.00")
    infra = _operator("infrastructure", client)
    infra.post(url(CloudPod, "changelist"), {"action": "suspend_pods", "_selected_action": [str(pod.pk)]})
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.SUSPENDED
    with tenant_a.scope():
        job = Job.objects.create(type="test.record", payload={}, status=JobStatus.FAILED, finished_at=timezone.now())
    infra.post(url(Job, "changelist"), {"action": "retry_jobs", "_selected_action": [str(job.pk)]})
    assert Job.all_tenants.get(pk=job.pk).status == JobStatus.PENDING
    infra.post(
        url(Invoice, "changelist"), {"action": "void", "_selected_action": [str(invoice.pk)], "confirmed": "yes"}
    )
    assert Invoice.all_tenants.get(pk=invoice.pk).status == InvoiceStatus.OPEN


def test_a_staff_user_without_a_group_sees_no_model(client, db):
    lonely = admin_login(client, make_user("lonely@mpanel.test", is_staff=True))
    page = lonely.get(reverse("admin:index"))
    assert page.status_code == 200
    assert page.context["dashboard"] == [] and page.context["app_list"] == []
    assert lonely.get(url(Customer, "changelist")).status_code == 403


# --- lists that stay fast ------------------------------------------------------------------------


def test_every_admin_of_ours_uses_the_estimating_paginator_and_no_full_count():
    for model, model_admin in admin.site._registry.items():
        if not model.__module__.startswith("apps."):
            continue
        assert issubclass(model_admin.paginator, EstimatedCountPaginator), model
        assert model_admin.show_full_result_count is False, model


def test_every_foreign_key_column_is_fetched_with_its_row():
    """No changelist loads a related row per line: each FK column is in list_select_related."""
    for model, model_admin in admin.site._registry.items():
        if not model.__module__.startswith("apps."):
            continue
        related = model_admin.list_select_related
        if related is True:
            continue
        related = set(related or [])
        if hasattr(model_admin, "get_list_select_related"):
            related |= set(model_admin.get_list_select_related(None) or [])
        for name in model_admin.list_display:
            try:
                field = model._meta.get_field(name)
            except Exception:
                continue  # a method or property column
            if isinstance(field, ForeignKey):
                fetched = name in related or any(r.startswith(f"{name}__") for r in related)
                assert fetched, f"{model.__name__}.{name} is shown but not in list_select_related"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the estimate is PostgreSQL's planner")
def test_the_paginator_estimates_big_results_without_counting(tenant_a):
    with tenant_a.scope():
        Job.objects.bulk_create([Job(tenant=tenant_a.tenant, type="test.record", payload={}) for _ in range(300)])
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{Job._meta.db_table}"')

    class Small(EstimatedCountPaginator):
        exact_below = 100

    qs = Job.all_tenants.order_by("-created_at")
    with CaptureQueriesContext(connection) as queries:
        count = Small(qs, 25).count
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "EXPLAIN" in sql and "COUNT(" not in sql.upper()
    assert 150 <= count <= 600  # the planner's estimate, near the 300 rows

    with CaptureQueriesContext(connection) as queries:
        exact = EstimatedCountPaginator(qs.filter(status=JobStatus.FAILED), 25).count  # small: counted exactly
    assert exact == 0
    assert any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)


def _more(model, fx, seq: int) -> None:
    if model is CloudPod:
        pod_in(fx, seq, node=node_in(fx, f"list-node-{seq % 3}"))
    elif model is Node:
        node_in(fx, f"list-node-{seq}")
    elif model is Invoice:
        _overdue_invoice(fx, _customer(fx, f"List{seq}"), "3.00")
    elif model is Subscription:
        _subscription(fx, _customer(fx, f"Sub{seq}"), _product(fx, f"sub-{seq}"), "monthly")


@pytest.mark.parametrize("model", [CloudPod, Node, Invoice, Subscription], ids=lambda m: m.__name__)
def test_more_changelists_cost_the_same_queries_with_more_rows(console, model):
    fxs = [make_tenant(f"List {i}") for i in range(2)]
    changelist = url(model, "changelist")
    for seq in range(2):
        _more(model, fxs[seq % 2], seq)
    console.get(changelist)
    with CaptureQueriesContext(connection) as few:
        assert console.get(changelist).status_code == 200
    for seq in range(2, 8):
        _more(model, fxs[seq % 2], seq)
    with CaptureQueriesContext(connection) as many:
        response = console.get(changelist)
    assert len(response.context["cl"].result_list) == 8
    assert len(many) == len(few), "\n".join(q["sql"] for q in many.captured_queries)


def test_the_search_page_is_behind_the_admin_login(client, tenant_a):
    search = reverse("admin:search")
    response = client.get(search, {"q": "acme"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    client.force_login(User.objects.create_superuser("no-otp@mpanel.test", PASSWORD))  # no verified device
    response = client.get(search, {"q": "acme"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


def test_every_admin_action_of_ours_asks_for_a_permission():
    """An action without ``permissions`` would be offered to every operator who can view the list."""
    for model, model_admin in admin.site._registry.items():
        if not model.__module__.startswith("apps."):
            continue
        for func, name, _description in model_admin._get_base_actions():
            assert getattr(func, "allowed_permissions", None), f"{model.__name__} action {name} asks for none"


def test_operators_record_a_payment_through_the_billing_service(client, tenant_a):
    """The invoice's page links to a form that calls payments.payment_record, as the API does:
    checked amount, audit, invoice paid; support (no change permission on invoices) cannot."""
    from apps.audit.models import AuditEvent
    from apps.billing.models import Payment

    invoice = _overdue_invoice(tenant_a, _customer(tenant_a, "Pay"), "10.00")
    record = reverse("admin:billing_invoice_record_payment", args=[invoice.pk])
    support = _operator("support", client)
    assert support.get(record).status_code == 403
    support.logout()
    billing = _operator("billing", client)
    page = billing.get(url(Invoice, "change", invoice.pk))
    assert record in page.content.decode()
    form = billing.get(record)
    assert form.status_code == 200 and form.context["form"].initial["amount"] == invoice.amount_due
    bad = billing.post(record, {"amount": "0.001", "method": "bank_transfer"})  # below the cent
    assert bad.status_code == 200 and not Payment.all_tenants.filter(invoice=invoice).exists()
    done = billing.post(record, {"amount": str(invoice.amount_due), "method": "bank_transfer", "reference": "TX-1"})
    assert done.status_code == 302
    payment = Payment.all_tenants.get(invoice=invoice)
    assert payment.amount == invoice.amount_due and payment.reference == "TX-1"
    assert Invoice.all_tenants.get(pk=invoice.pk).status == InvoiceStatus.PAID
    assert AuditEvent.objects.filter(object_id=str(invoice.pk), actor__email="billing@mpanel.test").exists()
