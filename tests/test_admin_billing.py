"""The money side of the operators' console: billing objects created and acted on from the admin,
through the same services as the API, as buttons on each object's page (apps.common.admin.ObjectAction),
permission-checked per operator group and confirmed when destructive."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.models import Invoice, InvoiceStatus, Payment
from apps.billing.services import invoices
from apps.console import groups as operator_groups
from apps.customers.models import Customer

from .conftest import admin_login, make_user

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
        return Customer.objects.create(tenant=fx.tenant, name=name, email=f"{name.lower()}@example.com",
                                       currency=currency, **extra)  # fmt: skip


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
