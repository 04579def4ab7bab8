"""The operators' console (Django admin at /admin/).

Every model of ours has an admin whose pages load; changelists show and filter by tenant and
cost the same number of queries whatever the number of rows; history (audit, jobs, sessions,
idempotency records) cannot be edited by hand; and every mutation made through the admin
writes an AuditEvent attributed to the operator.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import AuthToken
from apps.audit import services as audit
from apps.audit.models import AuditEvent
from apps.billing.models import Invoice
from apps.common.models import IdempotencyRecord
from apps.customers import services as customer_services
from apps.customers.models import Contact, Customer
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.metrics.models import HourRollup, MinuteRollup, NodeReport, Sample
from apps.tenancy.models import Invitation, Membership, Tenant
from apps.tenancy.roles import Role
from apps.tenancy.scoping import tenant_scope
from tests.conftest import PASSWORD, admin_login, make_user
from tests.support.models import JobCall

User = get_user_model()
OUR_APPS = {"accounts", "tenancy", "audit", "jobs", "customers", "common", "billing", "orders", "websites"}
OUR_APPS |= {"dns", "domains", "mail"}
OUR_APPS |= {"databases"}
READ_ONLY = [AuditEvent, Job, JobAttempt, AuthToken, IdempotencyRecord]
OUR_APPS |= {"metrics"}
READ_ONLY += [Sample, MinuteRollup, HourRollup, NodeReport]  # machine data: viewed, never edited


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def operator(db):
    return User.objects.create_superuser("operator@mpanel.test", PASSWORD)


@pytest.fixture
def console(client, operator):
    """A browser session of a platform operator, verified by a TOTP device (the admin requires 2FA)."""
    return admin_login(client, operator)


@pytest.fixture
def rows(tenant_a, operator) -> dict:
    """One row of every model that has an admin."""
    tenant = tenant_a.tenant
    with tenant_a.scope():
        customer = Customer.objects.create(tenant=tenant, name="Acme", email="acme@example.com", currency="EUR")
        contact = Contact.objects.create(customer=customer, name="Bob", email="bob@example.com")
        job = Job.objects.create(type="test.record", payload={"key": "rows"}, status=JobStatus.FAILED, attempts=1)
        attempt = JobAttempt.objects.create(job=job, number=1, outcome="failed", error="boom", worker="w1")
        payer = Customer.objects.create(tenant=tenant, name="Payer", email="payer@example.com", currency="EUR")
        billing_rows = _billing_rows(tenant, payer)
        website_rows = _website_rows(tenant)
    token, _raw = AuthToken.issue(user=operator, ttl=timedelta(days=1), ip="10.0.0.1")
    return {
        Tenant: tenant,
        Membership: Membership.objects.filter(tenant=tenant).first(),
        Invitation: Invitation.objects.create(
            tenant=tenant, email="new@example.com", role=Role.MEMBER, token_hash=Invitation.hash("raw")
        ),
        User: tenant_a.owner,
        AuthToken: token,
        AuditEvent: audit.record(action="customer.create", obj=customer, actor=operator, after={"name": "Acme"}),
        Job: job,
        JobAttempt: attempt,
        Customer: customer,
        Contact: contact,
        IdempotencyRecord: IdempotencyRecord.objects.create(
            principal=f"user:{operator.pk}",
            user=operator,
            tenant_key=str(tenant.pk),
            key="idem-1",
            fingerprint="f" * 64,
            state="done",
            status_code=201,
        ),
        **billing_rows,
        **website_rows,
        **_hosting_rows(tenant_a),
        **_database_rows(tenant_a),
        **_metrics_rows(tenant_a),
    }


def _metrics_rows(fx) -> dict:
    from django.utils import timezone

    from apps.nodes.models import Node

    with fx.scope():
        node = Node.objects.create(tenant=fx.tenant, hostname="metrics-admin", roles=["web"], vcpu=1, memory_mb=512,
                                   disk_gb=1, max_pods=0)  # fmt: skip
    rollup = {"node": node, "metric": "cpu.percent", "value_avg": 1.5, "value_min": 1, "value_max": 2, "samples": 2}
    return {
        Sample: Sample.objects.create(
            node=node, metric="cpu.percent", ts=1764000000, value=1.5, received_at=1764000001
        ),
        MinuteRollup: MinuteRollup.objects.create(ts=1764000000, **rollup),
        HourRollup: HourRollup.objects.create(ts=1763998800, **rollup),
        NodeReport: NodeReport.objects.create(
            node=node,
            reported_at=timezone.now(),
            services={"nginx": {"state": "up"}},
            latest={"cpu.percent": [1764000000, 1.5]},
        ),
    }


def _database_rows(fx) -> dict:
    from apps.databases import services as db_services
    from apps.nodes.models import Node

    with fx.scope():
        node = Node.objects.create(tenant=fx.tenant, hostname="db-admin", roles=["db"], vcpu=1, memory_mb=512,
                                   disk_gb=1, max_pods=0)  # fmt: skip
        server = db_services.server_create(tenant=fx.tenant, node=node, engine="mariadb", host="db.example", port=3306,
                                           admin_user="root", admin_password="admin-pw")  # fmt: skip
        database = db_services.database_create(tenant=fx.tenant, server=server, name="shop")
        user, _password = db_services.user_create(tenant=fx.tenant, server=server, name="app")
        grant = db_services.grant_create(database=database, user=user)
    return {type(server): server, type(database): database, type(user): user, type(grant): grant}


def _hosting_rows(fx) -> dict:
    from apps.dns import services as dns_services
    from apps.dns.models import Record, Zone
    from apps.nodes.models import Node

    with fx.scope():
        node = Node.objects.create(tenant=fx.tenant, hostname="dns-admin", roles=["dns"], vcpu=1, memory_mb=512,
                                   disk_gb=1, max_pods=0)  # fmt: skip
        zone = dns_services.zone_create(tenant=fx.tenant, name="admin.example", node=node)
        record = dns_services.record_create(zone=zone, name="www", type="A", content="192.0.2.1")
        from apps.domains import services as domain_services

        domain = domain_services.domain_create(tenant=fx.tenant, name="admin.example")
        domain_settings = domain_services.domain_settings_update(tenant=fx.tenant, data={"epp_password": "x"})
        from apps.mail import services as mail_services

        node.roles = ["dns", "mail"]
        node.save()
        mail_domain = mail_services.mail_domain_create(tenant=fx.tenant, name="mail-admin.example", node=node)
        mailbox = mail_services.mailbox_create(mail_domain=mail_domain, local_part="ops", password="x" * 12)
        alias = mail_services.alias_create(mail_domain=mail_domain, local_part="info", destinations=["a@b.example"])
        responder = mail_services.autoresponder_create(mailbox=mailbox, subject="Away", body="Back soon.")
    return {
        Zone: Zone.all_tenants.get(pk=zone.pk),
        Record: record,
        type(domain): domain,
        type(domain_settings): domain_settings,
        type(mail_domain): mail_domain,
        type(mailbox): mailbox,
        type(alias): alias,
        type(responder): responder,
    }


def _website_rows(tenant) -> dict:
    from decimal import Decimal

    from apps.nodes.models import Node
    from apps.websites.models import Website, WebsiteDomain
    from apps.websites.services import website_create

    node = Node.objects.create(tenant=tenant, hostname="web-admin", vcpu=Decimal(1), memory_mb=1024, disk_gb=10,
                               max_pods=0, roles=["web"])  # fmt: skip
    site = website_create(
        tenant=tenant, primary_domain="admin-row.example", aliases=["www.admin-row.example"], node=node
    )
    return {Website: site, WebsiteDomain: WebsiteDomain.objects.filter(website=site).first()}


def _billing_rows(tenant, customer) -> dict:
    from decimal import Decimal

    from apps.billing import models as bm
    from apps.billing.services import credit_notes, invoices, payments, subscriptions

    invoice = invoices.invoice_create(
        tenant=tenant, customer=customer, lines=[{"description": "Hosting", "unit_price": "10.00", "tax_rate": "20"}]
    )
    invoice = invoices.invoice_issue(invoice=invoice)
    payment = payments.payment_record(invoice=invoice, amount="20.00", method="bank_transfer", reference="x")
    note = credit_notes.credit_note_create(invoice=invoice, reason="x")
    event = bm.WebhookEvent.objects.create(
        provider="generic", event_id="e1", type="payment.succeeded", payload={}, raw_body="{}", tenant=tenant
    )
    from apps.catalog.services import product_create

    product = product_create(tenant=tenant, data={
        "name": "Metered", "slug": "metered", "type": "service",
        "metering": {"unit": "GB", "unit_prices": {"EUR": "1"}},
        "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("4.00"), "setup_fee": Decimal("0")}],
    })  # fmt: skip
    sub = subscriptions.subscription_create(tenant=tenant, customer=customer, product=product, cycle="monthly")
    sub_invoice = bm.Invoice.objects.filter(lines__subscription_charge__subscription=sub).first()
    notice = bm.DunningNotice.objects.create(invoice=sub_invoice, step="after:1", taken_on=sub_invoice.issue_date)
    usage = bm.UsageRecord.objects.create(subscription=sub, quantity=Decimal(2), idempotency_key="u1",
                                          occurred_at=sub.created_at)  # fmt: skip
    from apps.orders.models import Order
    from apps.orders.services import order_create

    order = order_create(tenant=tenant, customer=customer, items=[{"product": product, "cycle": "monthly"}])
    session = bm.CheckoutSession.objects.create(
        invoice=sub_invoice,
        session_id="cs_test_admin",
        amount=sub_invoice.amount_due,
        currency="EUR",
        url="https://checkout.stripe.com/c/pay/cs_test_admin",
    )
    return {
        bm.CheckoutSession: session,
        Order: order,
        bm.Subscription: sub,
        bm.SubscriptionCharge: bm.SubscriptionCharge.objects.filter(subscription=sub).first(),
        bm.UsageRecord: usage,
        bm.DunningNotice: notice,
        bm.Invoice: invoice,
        bm.Payment: payment,
        bm.CreditNote: note,
        bm.CreditTransaction: bm.CreditTransaction.objects.filter(customer=customer).first(),
        bm.WebhookEvent: event,
        bm.BillingSettings: bm.BillingSettings.objects.get(tenant=tenant),
        bm.NumberSequence: bm.NumberSequence.objects.filter(tenant=tenant).first(),
    }


def our_admins():
    return {m: a for m, a in admin.site._registry.items() if m._meta.app_label in OUR_APPS}


def form_data(response) -> dict:
    """The POST data a browser would send back for an admin add/change page, as rendered."""

    def fields_of(form) -> dict:
        data = {}
        for name in form.fields:
            bound = form[name]
            value = bound.value()
            if value is None or value is False:
                continue
            if value is True:
                data[bound.html_name] = "on"
            elif isinstance(value, list | tuple):
                data[bound.html_name] = [str(v) for v in value]
            else:
                data[bound.html_name] = str(value)
        return data

    data = fields_of(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update(fields_of(formset.management_form))
        for form in formset.forms:
            data.update(fields_of(form))
    return data


def events(action: str, obj=None):
    qs = AuditEvent.objects.filter(action=action)
    if obj is not None:
        qs = qs.filter(object_id=str(obj.pk))
    return list(qs)


# --- every page of every model ---------------------------------------------------------------


def test_every_model_of_ours_has_an_admin_and_its_pages_load(console, rows):
    admins = our_admins()
    assert set(admins) == set(rows), "an admin without a test row, or a model without an admin"

    for model, model_admin in admins.items():
        obj = rows[model]
        changelist = url(model, "changelist")
        response = console.get(changelist)
        assert response.status_code == 200, model
        assert obj.pk in [r.pk for r in response.context["cl"].result_list], f"{model} row not listed"

        if model_admin.search_fields:
            assert console.get(changelist, {"q": "x"}).status_code == 200, model
            assert console.get(changelist, {"q": str(obj.pk)}).status_code == 200, model

        assert console.get(url(model, "change", obj.pk)).status_code == 200, model
        assert console.get(url(model, "history", obj.pk)).status_code == 200, model
        if model_admin.has_add_permission(response.wsgi_request):
            assert console.get(url(model, "add")).status_code == 200, model


def test_the_console_sees_every_tenant(console, rows, tenant_b):
    with tenant_b.scope():
        other = Customer.objects.create(tenant=tenant_b.tenant, name="Other", email="o@example.com", currency="USD")
    listed = console.get(url(Customer, "changelist")).context["cl"].result_list
    assert {c.pk for c in listed} == {rows[Customer].pk, rows[Invoice].customer_id, other.pk}


def test_a_non_staff_user_is_sent_to_the_admin_login(client, tenant_a):
    client.force_login(tenant_a.owner)
    for path in ["/admin/", url(Customer, "changelist"), url(AuditEvent, "changelist")]:
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_anonymous_is_sent_to_the_admin_login(client, db):
    response = client.get(url(Job, "changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


# --- changelists: no N+1, the tenant shown and filterable ------------------------------------


def _make_rows(model, n: int, tenants: list[Tenant], seq: list[int]) -> None:
    for _ in range(n):
        seq[0] += 1
        i = seq[0]
        tenant = tenants[i % len(tenants)]
        if model is Customer:
            Customer.all_tenants.create(tenant=tenant, name=f"C{i}", email=f"c{i}@example.com", currency="USD")
        elif model is Job:
            Job.all_tenants.create(tenant=tenant, type="test.record", payload={"key": f"k{i}"})
        elif model is AuditEvent:
            user = make_user(f"actor{i}@example.com")
            audit.record(action="tenant.update", obj=tenant, tenant=tenant, actor=user, changes={"name": ["a", "b"]})
        elif model is Membership:
            Membership.objects.create(tenant=tenant, user=make_user(f"m{i}@example.com"), role=Role.MEMBER)


@pytest.mark.parametrize("model", [Customer, Job, AuditEvent, Membership], ids=lambda m: m.__name__)
def test_changelist_query_count_does_not_grow_with_rows(console, model):
    tenants = [Tenant.objects.create(name=f"T{i}") for i in range(3)]
    seq = [0]
    changelist = url(model, "changelist")
    console.get(changelist)  # warm caches (content types, session)

    _make_rows(model, 5, tenants, seq)
    with CaptureQueriesContext(connection) as five:
        response = console.get(changelist)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 5

    _make_rows(model, 20, tenants, seq)
    with CaptureQueriesContext(connection) as twenty_five:
        response = console.get(changelist)
    assert len(response.context["cl"].result_list) == 25
    assert len(twenty_five) == len(five), "\n".join(q["sql"] for q in twenty_five.captured_queries)


TENANT_COLUMNS = {
    Customer: "tenant",
    Contact: "tenant",
    Job: "tenant",
    JobAttempt: "job__tenant",
    Membership: "tenant",
    Invitation: "tenant",
    AuditEvent: "tenant",
}


def test_tenant_owned_changelists_show_and_filter_by_tenant(console, rows, tenant_b):
    tenant_a = rows[Tenant]
    for model, filter_path in TENANT_COLUMNS.items():
        changelist = url(model, "changelist")
        response = console.get(changelist)
        cl = response.context["cl"]
        assert "tenant" in cl.list_display, model
        assert "column-tenant" in response.content.decode(), model
        paths = [getattr(spec, "field_path", None) for spec in cl.filter_specs]
        assert filter_path in paths, (model, paths)

        # Filtering by another tenant hides tenant A's row; by tenant A shows it.
        obj = rows[model]
        param = f"{filter_path}__id__exact"
        shown = console.get(changelist, {param: str(tenant_a.pk)}).context["cl"].result_list
        assert obj.pk in [r.pk for r in shown], model
        hidden = console.get(changelist, {param: str(tenant_b.tenant.pk)}).context["cl"].result_list
        assert obj.pk not in [r.pk for r in hidden], model


def test_every_admin_has_columns_search_and_filters(rows):
    for model, model_admin in our_admins().items():
        assert model_admin.search_fields, f"{model.__name__} admin has no search"
        assert model_admin.list_filter, f"{model.__name__} admin has no filters"
        assert len(model_admin.list_display) > 1, f"{model.__name__} admin shows only __str__"


# --- read-only history ---------------------------------------------------------------------


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda m: m.__name__)
def test_history_cannot_be_edited_by_hand(console, rows, model):
    obj = rows[model]
    before = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
    count = model._base_manager.count()

    assert console.get(url(model, "add")).status_code == 403
    assert console.post(url(model, "add"), {}).status_code == 403

    change = url(model, "change", obj.pk)
    page = console.get(change)
    assert page.status_code == 200  # viewable
    assert page.context["has_change_permission"] is False
    assert b'name="_save"' not in page.content
    tampered = {f.name: "tampered" for f in model._meta.concrete_fields if f.get_internal_type() == "CharField"}
    assert console.post(change, tampered).status_code == 403

    assert console.get(url(model, "delete", obj.pk)).status_code == 403
    assert console.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403

    action_form = console.get(url(model, "changelist")).context["action_form"]
    choices = [name for name, _label in action_form.fields["action"].choices] if action_form else []
    assert "delete_selected" not in choices
    console.post(
        url(model, "changelist"), {"action": "delete_selected", "_selected_action": [str(obj.pk)], "post": "yes"}
    )

    assert model._base_manager.count() == count
    obj = model._base_manager.get(pk=obj.pk)
    assert {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields} == before


def test_job_attempts_inline_is_read_only(console, rows):
    page = console.get(url(Job, "change", rows[Job].pk))
    (inline,) = page.context["inline_admin_formsets"]
    assert not inline.has_add_permission
    assert not inline.has_change_permission
    assert not inline.has_delete_permission


# --- mutations are audited -----------------------------------------------------------------


def test_customer_add_change_delete_through_the_admin_are_audited(console, operator, tenant_a, tenant_b):
    add_url = url(Customer, "add")
    data = form_data(console.get(add_url))
    data.update(
        {
            "tenant": str(tenant_b.tenant.pk),
            "kind": "company",
            "name": "Acme",
            "company": "Acme Ltd",
            "email": " Billing@Acme.Example ",
            "currency": "EUR",
            "status": "active",
            "country": "NL",
            # one contact through the inline, on the add page
            "contacts-TOTAL_FORMS": "1",
            "contacts-0-name": "Bob",
            "contacts-0-email": "bob@acme.example",
            "contacts-0-role": "billing",
        }
    )
    response = console.post(add_url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors

    customer = Customer.all_tenants.get(name="Acme")
    assert customer.tenant_id == tenant_b.tenant.pk
    assert customer.email == "billing@acme.example"
    contact = Contact.all_tenants.get(customer=customer)
    assert contact.tenant_id == tenant_b.tenant.pk

    (created,) = events("customer.create", customer)
    assert created.via == "admin"
    assert created.actor_id == operator.pk
    assert created.actor_email == operator.email
    assert created.tenant_id == tenant_b.tenant.pk
    assert created.object_type == "customers.customer"
    assert created.request_id and created.request_id == response["X-Request-ID"]
    assert created.ip == "127.0.0.1"
    assert created.created_at is not None
    assert created.changes["name"] == [None, "Acme"]
    assert created.changes["currency"] == [None, "EUR"]
    assert created.changes["country"] == [None, "NL"]
    (contact_created,) = events("contact.create", contact)
    assert contact_created.via == "admin"
    assert contact_created.tenant_id == tenant_b.tenant.pk
    assert contact_created.changes["email"] == [None, "bob@acme.example"]

    # Change one field (and try to move it to another tenant, which the form does not allow).
    change_url = url(Customer, "change", customer.pk)
    data = form_data(console.get(change_url))
    assert "tenant" not in data
    data.update({"name": "Acme Holdings", "tenant": str(tenant_a.tenant.pk)})
    response = console.post(change_url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    customer.refresh_from_db()
    assert customer.name == "Acme Holdings"
    assert customer.tenant_id == tenant_b.tenant.pk
    (updated,) = events("customer.update", customer)
    assert updated.changes == {"name": ["Acme", "Acme Holdings"]}
    assert updated.via == "admin" and updated.actor_id == operator.pk and updated.ip == "127.0.0.1"
    assert updated.request_id == response["X-Request-ID"]
    assert events("contact.update") == []

    # Change the contact through the inline: only its changed field is recorded.
    data = form_data(console.get(change_url))
    data["contacts-0-role"] = "technical"
    assert console.post(change_url, data).status_code == 302
    (contact_updated,) = events("contact.update", contact)
    assert contact_updated.changes == {"role": ["billing", "technical"]}
    assert events("customer.update", customer) == [updated]  # the customer itself did not change

    # Delete.
    delete_url = url(Customer, "delete", customer.pk)
    assert console.get(delete_url).status_code == 200
    response = console.post(delete_url, {"post": "yes"})
    assert response.status_code == 302
    assert not Customer.all_tenants.filter(pk=customer.pk).exists()
    (deleted,) = events("customer.delete", customer)
    assert deleted.changes["name"] == ["Acme Holdings", None]
    assert deleted.via == "admin" and deleted.actor_id == operator.pk
    assert deleted.tenant_id == tenant_b.tenant.pk


def test_customer_admin_refuses_to_change_the_email_to_a_taken_one(console, rows):
    customer = rows[Customer]
    with tenant_scope(customer.tenant):
        other = Customer.objects.create(tenant=customer.tenant, name="Other", email="other@example.com", currency="EUR")
    change_url = url(Customer, "change", customer.pk)
    data = form_data(console.get(change_url))
    data["email"] = "OTHER@example.com"
    response = console.post(change_url, data)
    assert response.status_code == 200
    assert "email" in response.context["adminform"].form.errors
    customer.refresh_from_db()
    assert customer.email == "acme@example.com"
    assert other.email == "other@example.com"
    assert events("customer.update") == []


def test_customer_admin_defaults_the_currency_to_the_tenants(console, tenant_a):
    add_url = url(Customer, "add")
    data = form_data(console.get(add_url))
    data.update({"tenant": str(tenant_a.tenant.pk), "name": "No Currency", "email": "nc@example.com", "currency": ""})
    assert console.post(add_url, data).status_code == 302
    assert Customer.all_tenants.get(name="No Currency").currency == tenant_a.tenant.default_currency


def test_customer_delete_guards_apply_in_the_admin(console, rows, monkeypatch):
    customer = rows[Customer]
    monkeypatch.setattr(customer_services, "DELETE_GUARDS", [lambda c: "it has invoices"])
    page = console.get(url(Customer, "delete", customer.pk))
    assert page.status_code == 200
    assert "it has invoices" in page.content.decode()
    console.post(url(Customer, "delete", customer.pk), {"post": "yes"})
    console.post(
        url(Customer, "changelist"),
        {"action": "delete_selected", "_selected_action": [str(customer.pk)], "post": "yes"},
    )
    assert Customer.all_tenants.filter(pk=customer.pk).exists()
    assert events("customer.delete") == []


def test_customer_bulk_delete_is_audited(console, rows):
    customer = rows[Customer]
    response = console.post(
        url(Customer, "changelist"),
        {"action": "delete_selected", "_selected_action": [str(customer.pk)], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Customer.all_tenants.filter(pk=customer.pk).exists()
    (deleted,) = events("customer.delete", customer)
    assert deleted.via == "admin"


def test_customer_admin_refuses_a_duplicate_email_in_the_tenant(console, rows):
    existing = rows[Customer]
    add_url = url(Customer, "add")
    data = form_data(console.get(add_url))
    data.update({"tenant": str(existing.tenant_id), "name": "Dup", "email": existing.email.upper(), "currency": "USD"})
    response = console.post(add_url, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not Customer.all_tenants.filter(name="Dup").exists()


def test_contact_admin_refuses_a_customer_of_another_tenant(console, rows, tenant_b):
    add_url = url(Contact, "add")
    data = form_data(console.get(add_url, {"tenant": str(tenant_b.tenant.pk)}))  # the tenant first
    data.update(
        {"tenant": str(tenant_b.tenant.pk), "customer": str(rows[Customer].pk), "name": "X", "email": "x@example.com"}
    )
    response = console.post(add_url, data)
    assert response.status_code == 200
    assert "customer" in response.context["adminform"].form.errors
    assert not Contact.all_tenants.filter(name="X").exists()

    data["tenant"] = str(rows[Customer].tenant_id)
    assert console.post(add_url, data).status_code == 302
    contact = Contact.all_tenants.get(name="X")
    (created,) = events("contact.create", contact)
    assert created.tenant_id == rows[Customer].tenant_id


def test_tenant_admin_audits_with_the_tenant_itself(console, operator):
    add_url = url(Tenant, "add")
    data = form_data(console.get(add_url))
    data.update({"name": "Hosting Co", "slug": "hosting-co", "default_currency": "EUR", "status": "active"})
    response = console.post(add_url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    tenant = Tenant.objects.get(slug="hosting-co")
    (created,) = events("tenant.create", tenant)
    assert created.tenant_id == tenant.pk
    assert created.actor_id == operator.pk


def test_tenant_slug_is_made_from_the_name_when_blank(console):
    add_url = url(Tenant, "add")
    data = form_data(console.get(add_url))
    data.update({"name": "Blank Slug Hosting", "slug": "", "default_currency": "USD", "status": "active"})
    response = console.post(add_url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert Tenant.objects.get(name="Blank Slug Hosting").slug == "blank-slug-hosting"


def test_membership_admin_changes_only_the_role(console, rows, tenant_b):
    membership = rows[Membership]
    tenant, user, role = membership.tenant_id, membership.user_id, membership.role
    change_url = url(Membership, "change", membership.pk)
    data = form_data(console.get(change_url))
    assert "tenant" not in data and "user" not in data
    data.update({"role": Role.ADMIN if role != Role.ADMIN else Role.MEMBER, "tenant": str(tenant_b.tenant.pk)})
    assert console.post(change_url, data).status_code == 302
    membership.refresh_from_db()
    assert (membership.tenant_id, membership.user_id) == (tenant, user)
    (event,) = events("membership.update", membership)
    assert event.changes == {"role": [role, data["role"]]}
    assert event.tenant_id == tenant


def test_membership_added_through_the_user_admin_inline_is_audited(console, rows, tenant_b):
    user = make_user("someone@example.com")
    change_url = url(User, "change", user.pk)
    data = form_data(console.get(change_url))
    data.update(
        {
            "memberships-TOTAL_FORMS": "1",
            "memberships-0-tenant": str(tenant_b.tenant.pk),
            "memberships-0-role": Role.BILLING,
        }
    )
    response = console.post(change_url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    membership = Membership.objects.get(user=user)
    assert membership.tenant_id == tenant_b.tenant.pk
    (created,) = events("membership.create", membership)
    assert created.tenant_id == tenant_b.tenant.pk
    assert created.changes["role"] == [None, "BILLING"]
    assert events("user.update", user) == []  # nothing about the user itself changed

    # Removing it through the same inline is audited too.
    data = form_data(console.get(change_url))
    data["memberships-0-DELETE"] = "on"
    response = console.post(change_url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert not Membership.objects.filter(user=user).exists()
    (deleted,) = events("membership.delete", membership)
    assert deleted.tenant_id == tenant_b.tenant.pk
    assert deleted.changes["role"] == ["BILLING", None]


def test_operator_permissions_change_on_a_user_is_audited(console, operator):
    from django.contrib.auth.models import Permission

    user = make_user("staffer@example.com", is_staff=True)
    change_url = url(User, "change", user.pk)
    data = form_data(console.get(change_url))
    perm = Permission.objects.get(codename="view_customer")
    data["user_permissions"] = [str(perm.pk)]
    response = console.post(change_url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    (event,) = events("user.update", user)
    assert event.changes == {"user_permissions": [[], [str(perm)]]}
    assert event.actor_id == operator.pk


def test_object_permission_grants_on_a_customer_are_audited(console, rows, tenant_a):
    customer = rows[Customer]
    member = tenant_a.users[Role.MEMBER]
    manage = reverse("admin:customers_customer_permissions_manage_user", args=[customer.pk, member.pk])
    assert console.get(manage).status_code == 200
    response = console.post(manage, {"permissions": ["change_customer"]})
    assert response.status_code == 302
    assert member.has_perm("customers.change_customer", customer)
    (event,) = events("customer.permissions_change", customer)
    assert event.changes == {f"user:{member.email}": [[], ["change_customer"]]}
    assert event.via == "admin" and event.tenant_id == tenant_a.tenant.pk


def test_user_added_through_the_admin_is_audited_without_secrets(console, operator):
    add_url = url(User, "add")
    data = form_data(console.get(add_url))
    data.update(
        {
            "email": "New.Operator@Example.com",
            "password1": "a-Long-pass-phrase-42",
            "password2": "a-Long-pass-phrase-42",
        }
    )
    response = console.post(add_url, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    user = User.objects.get(email__iexact="new.operator@example.com")
    (created,) = events("user.create", user)
    assert created.actor_id == operator.pk and created.via == "admin"
    assert not any("password" in key for key in created.changes)
    assert user.check_password("a-Long-pass-phrase-42")


def test_password_set_through_the_admin_is_audited(console, operator, tenant_a):
    user = tenant_a.owner
    response = console.post(
        reverse("admin:auth_user_password_change", args=[user.pk]),
        {"password1": "another-Long-phrase-7", "password2": "another-Long-phrase-7", "usable_password": "true"},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("another-Long-phrase-7")
    (event,) = events("user.password_change", user)
    assert event.actor_id == operator.pk and event.via == "admin"
    assert PASSWORD not in str(event.changes) and "another-Long-phrase-7" not in str(event.changes)


def test_invitations_cannot_be_added_by_hand_but_can_be_revoked(console, rows):
    assert console.get(url(Invitation, "add")).status_code == 403
    invitation = rows[Invitation]
    page = console.get(url(Invitation, "change", invitation.pk))
    assert invitation.token_hash not in page.content.decode()
    response = console.post(
        url(Invitation, "changelist"),
        {"action": "revoke_invitations", "_selected_action": [str(invitation.pk)], "confirmed": "yes"},
    )
    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    (event,) = events("member.invite_revoke", invitation)
    assert event.via == "admin" and event.tenant_id == invitation.tenant_id


def test_session_revoke_action_is_audited(console, rows, operator):
    token = rows[AuthToken]
    response = console.post(
        url(AuthToken, "changelist"), {"action": "revoke", "_selected_action": [str(token.pk)], "confirmed": "yes"}
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    (event,) = events("auth.session_revoke", token)
    assert event.via == "admin" and event.actor_id == operator.pk


# --- job actions ---------------------------------------------------------------------------


def _retry(console, job):
    return console.post(
        url(Job, "changelist"), {"action": "retry_jobs", "_selected_action": [str(job.pk)], "index": "0"}
    )


def test_retry_action_requeues_a_failed_job(console, operator, tenant_a, django_capture_on_commit_callbacks):
    key = f"retry-{uuid.uuid4().hex[:8]}"
    with tenant_a.scope():
        job = Job.objects.create(
            type="test.record",
            payload={"key": key},
            status=JobStatus.FAILED,
            attempts=5,
            max_attempts=5,
            last_error="boom",
            finished_at=timezone.now(),
        )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _retry(console, job)
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert job.finished_at is None
    (event,) = events("job.retry", job)
    assert event.changes == {"status": ["FAILED", "PENDING"]}
    assert event.via == "admin" and event.actor_id == operator.pk and event.tenant_id == tenant_a.tenant.pk
    assert [m.level for m in messages.get_messages(response.wsgi_request)] == [messages.SUCCESS]

    # Once the transaction commits the job is dispatched; in tests it runs in-process.
    for callback in callbacks:
        callback()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert JobCall.objects.filter(key=key).count() == 1


def test_retry_action_leaves_a_succeeded_job_alone(console, tenant_a):
    with tenant_a.scope():
        job = Job.objects.create(
            type="test.record", payload={"key": "done"}, status=JobStatus.SUCCEEDED, finished_at=timezone.now()
        )
    before = Job.all_tenants.values().get(pk=job.pk)
    response = _retry(console, job)
    assert response.status_code == 302
    sent = list(messages.get_messages(response.wsgi_request))
    assert [m.level for m in sent] == [messages.WARNING]
    assert "cannot be retried" in sent[0].message
    assert Job.all_tenants.values().get(pk=job.pk) == before
    assert events("job.retry") == []


def test_cancel_action_cancels_a_pending_job(console, operator, tenant_a):
    with tenant_a.scope():
        job = Job.objects.create(type="test.record", payload={"key": "c"})
    response = console.post(
        url(Job, "changelist"),
        {"action": "cancel_jobs", "_selected_action": [str(job.pk)], "index": "0", "confirmed": "yes"},
    )
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    (event,) = events("job.cancel", job)
    assert event.via == "admin" and event.actor_id == operator.pk


DESTRUCTIVE_WORDS = ("delete", "void", "uncollectible", "cancel", "revoke", "terminate", "drop", "purge")


def test_every_destructive_action_asks_first():
    """An action whose name says it destroys is wrapped by confirm_first (a new one is caught here)."""
    from django.contrib import admin as django_admin

    unconfirmed = []
    for model, model_admin in django_admin.site._registry.items():
        if model._meta.app_label not in OUR_APPS | {"cloudpods", "security", "nodes", "console"}:
            continue
        for name in model_admin.actions or []:
            if name == "delete_selected" or not any(word in name for word in DESTRUCTIVE_WORDS):
                continue
            if not getattr(getattr(type(model_admin), name), "confirms", False):
                unconfirmed.append(f"{model.__name__}.{name}")
    assert unconfirmed == []


def test_object_pages_show_their_related_rows(console, rows, tenant_a, django_assert_max_num_queries, monkeypatch):
    """A customer's page lists its subscriptions and invoices, a pod's and a website's their jobs;
    each row links to its page and "All …" opens the filtered list (an allowed lookup, not ?e=1)."""
    from apps.billing.models import Invoice, Subscription
    from apps.cloudpods.models import CloudPod
    from apps.jobs import services as job_services
    from apps.websites.models import Website

    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)
    subscription = rows[Subscription]
    invoice = Invoice.all_tenants.filter(customer=subscription.customer).first()
    with django_assert_max_num_queries(40):
        page = console.get(url(type(subscription.customer), "change", subscription.customer.pk))
    html = page.content.decode()
    assert page.status_code == 200
    assert url(Subscription, "change", subscription.pk) in html and url(Invoice, "change", invoice.pk) in html
    every = f"{url(Invoice, 'changelist')}?customer__id__exact={subscription.customer.pk}"
    assert every in html
    listed = console.get(every)
    assert listed.status_code == 200
    assert {i.pk for i in listed.context["cl"].result_list} == {
        i.pk for i in Invoice.all_tenants.filter(customer=subscription.customer)
    }

    site = rows[Website]
    page = console.get(url(Website, "change", site.pk)).content.decode()
    job = Job.all_tenants.filter(object_type="websites.website", object_id=str(site.pk)).first()
    assert job is not None and url(Job, "change", job.pk) in page
    from tests.pods_support import pod_in

    pod = pod_in(tenant_a, 99)
    with tenant_a.scope():
        pod_job = job_services.job_enqueue(tenant=tenant_a.tenant, type="cloudpod.suspend", payload={}, obj=pod)
    page = console.get(url(CloudPod, "change", pod.pk)).content.decode()
    assert "Jobs (latest first)" in page and url(Job, "change", pod_job.pk) in page
