"""The money side of the operators' console: billing objects created and acted on from the admin,
through the same services as the API, as buttons on each object's page (apps.common.admin.ObjectAction),
permission-checked per operator group and confirmed when destructive."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from pypdf import PdfReader

from apps.audit.models import AuditEvent
from apps.billing.models import (
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    Subscription,
    SubscriptionStatus,
)
from apps.billing.services import invoices, payments, subscriptions
from apps.catalog.services import product_create
from apps.common.display import money
from apps.console import groups as operator_groups
from apps.customers.models import Customer
from apps.orders.models import Order, OrderStatus
from tests.conftest import admin_login, make_user

pytestmark = pytest.mark.django_db


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def action_url(obj, name: str) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_object_action", args=[obj.pk, name])


def operator(client, group: str):
    operator_groups.ensure_operator_groups()
    user = make_user(f"{group}@mpanel.test", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return admin_login(client, user)


def customer(fx, name="Acme", currency="EUR", **extra) -> Customer:
    with fx.scope():
        return Customer.objects.create(
            tenant=fx.tenant, name=name, email=f"{name.lower()}@example.com", currency=currency, **extra
        )


def draft(fx, who, *amounts: str) -> Invoice:
    with fx.scope():
        lines = [{"description": f"Line {a}", "unit_price": a} for a in amounts]
        return invoices.invoice_create(tenant=fx.tenant, customer=who, lines=lines)


def issued(fx, who, *amounts: str) -> Invoice:
    invoice = draft(fx, who, *amounts)
    with fx.scope():
        return invoices.invoice_issue(invoice=invoice)


def fresh(obj):
    return type(obj).all_tenants.get(pk=obj.pk)


# --- the machinery: buttons, permissions, confirmation -----------------------------------------


def test_an_invoice_page_shows_the_buttons_its_state_allows(client, tenant_a):
    billing = operator(client, "billing")
    inv = draft(tenant_a, customer(tenant_a), "10.00")
    page = billing.get(url(Invoice, "change", inv.pk)).content.decode()
    assert 'id="object-action-issue"' in page and 'id="object-action-pdf"' in page
    assert 'id="object-action-void"' not in page and 'id="object-action-record_payment"' not in page
    billing.post(action_url(inv, "issue"))
    page = billing.get(url(Invoice, "change", inv.pk)).content.decode()
    assert 'id="object-action-issue"' not in page
    assert 'id="object-action-void"' in page and 'id="object-action-record_payment"' in page


def test_a_button_runs_its_service_answers_with_a_message_and_goes_back(client, tenant_a):
    billing = operator(client, "billing")
    inv = draft(tenant_a, customer(tenant_a), "10.00", "5.50")
    response = billing.post(action_url(inv, "issue"), follow=True)
    assert response.redirect_chain[-1][0] == url(Invoice, "change", inv.pk)
    inv = fresh(inv)
    assert inv.status == InvoiceStatus.OPEN and inv.number
    assert f"Issued {inv.number}: €15.50" in response.content.decode()
    event = AuditEvent.objects.get(action="invoice.issue", object_id=str(inv.pk))
    assert event.actor.email == "billing@mpanel.test"


def test_a_refusal_of_the_service_is_a_message_not_a_500(client, tenant_a):
    billing = operator(client, "billing")
    inv = issued(tenant_a, customer(tenant_a), "10.00")
    response = billing.post(action_url(inv, "issue"), follow=True)
    assert response.status_code == 200
    assert "cannot be issued" in response.content.decode()


def test_a_destructive_button_asks_first(client, tenant_a):
    billing = operator(client, "billing")
    inv = issued(tenant_a, customer(tenant_a), "10.00")
    page = billing.get(action_url(inv, "void"))
    assert page.status_code == 200 and "Are you sure?" in page.content.decode()
    billing.post(action_url(inv, "void"))  # without the answer: asked again, nothing done
    assert fresh(inv).status == InvoiceStatus.OPEN
    billing.post(action_url(inv, "void"), {"confirmed": "yes"})
    assert fresh(inv).status == InvoiceStatus.VOID
    assert AuditEvent.objects.filter(action="invoice.void", object_id=str(inv.pk)).exists()


def test_a_group_without_the_permission_sees_no_button_and_gets_403(client, tenant_a):
    inv = issued(tenant_a, customer(tenant_a), "10.00")
    support = operator(client, "support")
    page = support.get(url(Invoice, "change", inv.pk))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="object-action-void"' not in html and 'id="object-action-record_payment"' not in html
    for name in ("void", "record_payment", "send", "mark_uncollectible"):
        assert support.get(action_url(inv, name)).status_code == 403
        assert support.post(action_url(inv, name), {"confirmed": "yes"}).status_code == 403
    assert fresh(inv).status == InvoiceStatus.OPEN
    assert support.get(action_url(inv, "nope")).status_code == 404


def test_record_a_payment_with_a_form(client, tenant_a):
    billing = operator(client, "billing")
    inv = issued(tenant_a, customer(tenant_a), "10.00")
    form = billing.get(action_url(inv, "record_payment"))
    assert form.context["form"].initial["amount"] == Decimal("10.00")
    bad = billing.post(action_url(inv, "record_payment"), {"amount": "0.001", "method": "bank_transfer"})
    assert bad.status_code == 200 and bad.context["form"].errors
    assert not Payment.all_tenants.filter(invoice=inv).exists()
    paid = {"amount": "10.00", "method": "cash", "reference": "R-1", "received_on": "2026-11-30"}
    done = billing.post(action_url(inv, "record_payment"), paid)
    assert done.status_code == 302
    payment = Payment.all_tenants.get(invoice=inv)
    assert payment.reference == "R-1" and payment.received_at.date().isoformat() == "2026-11-30"
    assert fresh(inv).status == InvoiceStatus.PAID
    assert AuditEvent.objects.filter(action="payment.create", object_id=str(payment.pk)).exists()


# --- invoices from the add page to the PDF -----------------------------------------------------


def _lines(*lines, prefix="lines", initial=0) -> dict:
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(lines)),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for i, line in enumerate(lines):
        for key, value in line.items():
            data[f"{prefix}-{i}-{key}"] = value
    return data


def test_billing_creates_an_invoice_with_two_lines_issues_it_records_a_payment_and_downloads_its_pdf(client, tenant_a):
    billing = operator(client, "billing")
    who = customer(tenant_a, "Globex", currency="EUR")
    page = billing.get(url(Invoice, "add") + f"?customer={who.pk}")
    assert page.status_code == 200 and page.context["adminform"].form.initial["currency"] == "EUR"
    posted = {
        "customer": str(who.pk),
        "currency": "",
        "due_date": "",
        "notes": "Thank you",
        **_lines(
            {"description": "Web hosting", "quantity": "2", "unit_price": "9.99", "discount": "0", "tax_rate": "0"},
            {"description": "Setup", "quantity": "1", "unit_price": "25.00", "discount": "0", "tax_rate": "20"},
        ),
    }
    response = billing.post(url(Invoice, "add"), posted)
    assert response.status_code == 302, response.context["adminform"].form.errors
    inv = Invoice.all_tenants.get(customer=who)
    assert inv.status == InvoiceStatus.DRAFT and inv.currency == "EUR"
    assert InvoiceLine.all_tenants.filter(invoice=inv).count() == 2
    assert inv.total == Decimal("49.98")  # 19.98 + 25.00 + 5.00 tax, computed by the service
    assert AuditEvent.objects.filter(action="invoice.create", object_id=str(inv.pk)).exists()

    # the draft's page edits its lines through invoice_update_draft
    line = InvoiceLine.all_tenants.filter(invoice=inv).order_by("position").first()
    edit = {
        "currency": "EUR",
        "due_date": "",
        "notes": "Thanks",
        **_lines(
            {
                "id": str(line.pk),
                "invoice": str(inv.pk),
                "description": "Web hosting",
                "quantity": "3",
                "unit_price": "9.99",
                "discount": "0",
                "tax_rate": "0",
            },
            initial=1,
        ),
    }
    edit["lines-TOTAL_FORMS"] = "1"
    response = billing.post(url(Invoice, "change", inv.pk), edit)
    assert response.status_code == 302, response.context["adminform"].form.errors
    inv = fresh(inv)
    assert inv.total == Decimal("29.97") and inv.notes == "Thanks"
    assert InvoiceLine.all_tenants.filter(invoice=inv).count() == 1
    assert AuditEvent.objects.filter(action="invoice.update", object_id=str(inv.pk)).exists()

    billing.post(action_url(inv, "issue"))
    inv = fresh(inv)
    assert inv.status == InvoiceStatus.OPEN and inv.number
    # issued: no editing by hand any more
    assert billing.post(url(Invoice, "change", inv.pk), edit).status_code == 403

    billing.post(action_url(inv, "record_payment"), {"amount": "29.97", "method": "bank_transfer"})
    assert fresh(inv).status == InvoiceStatus.PAID

    pdf = billing.get(action_url(inv, "pdf"))
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    body = b"".join(pdf.streaming_content) if pdf.streaming else pdf.content
    assert body.startswith(b"%PDF-") and inv.number in pdf["Content-Disposition"]
    assert inv.number in "".join(p.extract_text() for p in PdfReader(io.BytesIO(body)).pages)


def test_a_service_refusal_on_the_add_page_is_a_form_error_and_writes_nothing(client, tenant_a):
    billing = operator(client, "billing")
    who = customer(tenant_a, "Yen", currency="JPY")
    posted = {
        "customer": str(who.pk),
        "currency": "",
        "due_date": "",
        "notes": "",
        **_lines({"description": "Hosting", "quantity": "1", "unit_price": "10.55", "tax_rate": "0"}),
    }
    response = billing.post(url(Invoice, "add"), posted)
    assert response.status_code == 200
    assert "unit price" in str(response.context["adminform"].form.errors)
    assert not Invoice.all_tenants.filter(customer=who).exists()


def test_void_another_invoice_and_credit_note_from_the_page(client, tenant_a):
    billing = operator(client, "billing")
    who = customer(tenant_a)
    first, second = issued(tenant_a, who, "10.00"), issued(tenant_a, who, "40.00")
    billing.post(action_url(first, "void"), {"confirmed": "yes"})
    assert fresh(first).status == InvoiceStatus.VOID
    line = InvoiceLine.all_tenants.get(invoice=second)
    page = billing.get(action_url(second, "credit_note"))
    assert str(line.pk) in page.content.decode()
    billing.post(action_url(second, "credit_note"), {"line": str(line.pk), "amount": "15.00", "reason": "Outage"})
    note = CreditNote.all_tenants.get(invoice=second)
    assert note.total == Decimal("15.00") and fresh(second).amount_due == Decimal("25.00")
    assert billing.get(url(type(note), "change", note.pk)).status_code == 200
    pdf = billing.get(action_url(note, "pdf"))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")


# --- subscriptions: add, change with the proration shown first, suspend, resume, cancel ----------


def product(fx, slug="hosting", monthly="10.00"):
    with fx.scope():
        return product_create(
            tenant=fx.tenant,
            data={
                "name": slug.title(),
                "slug": slug,
                "type": "service",
                "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal(monthly)}],
            },
        )


def test_add_a_subscription_pay_it_and_change_its_plan_after_seeing_the_proration(client, tenant_a):
    billing = operator(client, "billing")
    who = customer(tenant_a)
    small, big = product(tenant_a, "small", "10.00"), product(tenant_a, "big", "40.00")
    assert billing.get(url(Subscription, "add") + f"?customer={who.pk}").status_code == 200
    posted = {
        "customer": str(who.pk),
        "product": str(small.pk),
        "cycle": "monthly",
        "currency": "",
        "quantity": "1",
        "bill_now": "on",
    }
    response = billing.post(url(Subscription, "add"), posted)
    sub = Subscription.all_tenants.get(customer=who)
    assert response.status_code == 302 and response["Location"] == url(Subscription, "change", sub.pk)
    page = billing.get(url(Subscription, "change", sub.pk)).content.decode()
    assert "Acme · Small" in page and str(small.pk) not in page.split("<title>")[1].split("</title>")[0]
    first = Invoice.all_tenants.get(customer=who)
    billing.post(action_url(first, "record_payment"), {"amount": str(first.amount_due), "method": "cash"})
    sub = fresh(sub)
    assert sub.status == SubscriptionStatus.ACTIVE

    preview = billing.post(action_url(sub, "change_plan"), {"product": str(big.pk), "quantity": "1"})
    assert preview.status_code == 200
    html = preview.content.decode()
    expected = subscriptions.subscription_change_preview(sub=sub, product=big, quantity=1)
    assert 'id="proration"' in html and "is charged on the next invoice" in html
    assert money(expected.net, "EUR") in html and expected.net > 0
    assert fresh(sub).product_id == small.pk  # nothing changed before the confirmation
    billing.post(action_url(sub, "change_plan"), {"product": str(big.pk), "quantity": "1", "confirmed": "yes"})
    assert fresh(sub).product_id == big.pk
    assert AuditEvent.objects.filter(action="subscription.change", object_id=str(sub.pk)).exists()

    billing.post(action_url(sub, "suspend"), {"confirmed": "yes"})
    assert fresh(sub).status == SubscriptionStatus.SUSPENDED
    billing.post(action_url(sub, "resume"))
    assert fresh(sub).status == SubscriptionStatus.ACTIVE
    billing.post(action_url(sub, "cancel"), {"when": "period_end"})
    assert fresh(sub).cancel_at_period_end and fresh(sub).status == SubscriptionStatus.ACTIVE
    assert AuditEvent.objects.filter(action="subscription.cancel_scheduled", object_id=str(sub.pk)).exists()


# --- the customer's page: the operator's home for that customer --------------------------------


def test_a_customer_page_shows_the_right_figures_with_a_constant_number_of_queries(
    client, tenant_a, django_assert_max_num_queries
):
    billing = operator(client, "billing")
    who = customer(tenant_a, "Initech")
    paid = issued(tenant_a, who, "30.00")
    issued(tenant_a, who, "12.50")
    issued(tenant_a, who, "7.50")
    with tenant_a.scope():  # 5.00 too much: the customer's credit (applied to the next invoice issued)
        payments.payment_record(invoice=paid, amount=Decimal("35.00"), method="cash")
    draft(tenant_a, who, "1.00")
    page = billing.get(url(Customer, "change", who.pk))
    html = page.content.decode()
    owed = html.split('id="figure-owed"')[1].split("</div>")[0]
    assert "€20.00" in owed
    assert "€30.00" in html.split('id="figure-paid"')[1].split("</div>")[0]
    assert "€5.00" in html.split('id="figure-credit"')[1].split("</div>")[0]
    for name in ("create_invoice", "add_subscription", "place_order"):
        assert f'id="object-action-{name}"' in html
    go = billing.get(action_url(who, "create_invoice"))
    assert go.status_code == 302 and go["Location"] == f"{url(Invoice, 'add')}?customer={who.pk}"
    assert "payment.create" in html and "invoice.issue" in html  # recent activity

    small = product(tenant_a, "small")
    for i in range(4):  # more of everything: the same number of queries
        issued(tenant_a, who, f"{i + 1}.00")
        with tenant_a.scope():
            subscriptions.subscription_create(tenant=tenant_a.tenant, customer=who, product=small, cycle="monthly")
    with django_assert_max_num_queries(len(_queries(billing, url(Customer, "change", who.pk)))):
        billing.get(url(Customer, "change", who.pk))


def _queries(client, path) -> list:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get(path)
    return captured.captured_queries


def test_support_sees_the_customer_page_without_billing_buttons(client, tenant_a):
    who = customer(tenant_a)
    support = operator(client, "support")
    html = support.get(url(Customer, "change", who.pk)).content.decode()
    assert 'id="customer-summary"' in html and 'id="object-action-create_invoice"' not in html
    assert support.get(action_url(who, "create_invoice")).status_code == 403
    assert support.get(url(Invoice, "add")).status_code == 403


# --- orders ------------------------------------------------------------------------------------


def test_place_an_order_from_the_admin_accept_it_and_cancel_another(client, tenant_a):
    billing = operator(client, "billing")
    who = customer(tenant_a)
    small = product(tenant_a, "small", "10.00")
    posted = {
        "customer": str(who.pk),
        "currency": "",
        "notes": "",
        **_lines({"product": str(small.pk), "cycle": "monthly", "quantity": "2"}, prefix="items"),
    }
    response = billing.post(url(Order, "add"), posted)
    order = Order.all_tenants.get(customer=who)
    assert response.status_code == 302 and order.total == Decimal("20.00")
    assert AuditEvent.objects.filter(action="order.create", object_id=str(order.pk)).exists()
    billing.post(action_url(order, "accept"))
    order = fresh(order)
    assert order.status == OrderStatus.ACCEPTED and order.invoice.status == InvoiceStatus.OPEN
    empty = billing.post(url(Order, "add"), {**posted, **_lines(prefix="items")})
    assert empty.status_code == 200 and "at least one item" in str(empty.context["adminform"].form.errors)
    billing.post(url(Order, "add"), posted)
    other = Order.all_tenants.filter(customer=who, status=OrderStatus.PENDING).get()
    billing.post(action_url(other, "cancel"), {"confirmed": "yes"})
    assert fresh(other).status == OrderStatus.CANCELLED


def test_send_by_e_mail_queues_the_invoice_with_its_pdf_and_is_audited(
    client, tenant_a, mailoutbox, django_capture_on_commit_callbacks, settings
):
    settings.MPANEL_JOBS_EAGER = True
    billing = operator(client, "billing")
    inv = issued(tenant_a, customer(tenant_a, "Mailme"), "10.00")
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = billing.post(action_url(inv, "send"), follow=True)
    assert "is being sent to mailme@example.com" in response.content.decode()
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["mailme@example.com"]
    assert mailoutbox[0].attachments[0][0] == f"{inv.number}.pdf"
    event = AuditEvent.objects.get(action="invoice.send", object_id=str(inv.pk))
    assert event.changes == {"to": "mailme@example.com"} and event.actor.email == "billing@mpanel.test"
    draft_one = draft(tenant_a, customer(tenant_a, "Other"), "1.00")
    refused = billing.post(action_url(draft_one, "send"), follow=True)
    assert "issue it first" in refused.content.decode()
