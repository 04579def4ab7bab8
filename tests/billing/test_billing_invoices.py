from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.billing.models import BillingSettings, CreditTransaction, Invoice, InvoiceStatus, Payment
from apps.billing.services import credit
from apps.tenancy.roles import Role
from tests.billing_support import customer_of, draft, issued
from tests.conftest import client_for

D = Decimal


def url(name, invoice=None, **kw):
    if invoice is None:
        return reverse(f"invoice-{name}")
    return reverse(f"invoice-{name}", kwargs={"pk": invoice.pk, **kw})


@pytest.fixture
def admin(tenant_a):
    return client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)


@pytest.mark.django_db
class TestLifecycle:
    def test_create_issue_pay_per_contract(self, tenant_a, admin, django_capture_on_commit_callbacks):
        customer = customer_of(tenant_a)
        created = admin.post(url("list"), {
            "customer": str(customer.pk), "currency": "EUR",
            "lines": [{"description": "Hosting", "quantity": "1", "unit_price": "19.99", "tax_rate": "21"},
                      {"description": "Setup", "quantity": "0.5", "unit_price": "1.99"}],
        }, format="json")  # fmt: skip
        assert created.status_code == 201, created.content
        body = created.json()
        assert body["status"] == "draft" and body["number"] is None
        # 19.99 + round(0.5 x 1.99 = 0.995) = 19.99 + 1.00; tax round(19.99 x 21%) = 4.20 (4.1979)
        assert (body["subtotal"], body["tax"] if "tax" in body else body["tax_total"]) == ("20.99", "4.20")
        assert body["total"] == "25.19" and body["amount_due"] == "25.19" and body["amount_paid"] == "0.00"
        invoice = Invoice.all_tenants.get(pk=body["id"])
        with django_capture_on_commit_callbacks(execute=True):
            opened = admin.post(url("issue", invoice))
        assert opened.status_code == 200
        assert opened.json()["status"] == "open"
        assert opened.json()["number"].startswith("INV-") and opened.json()["number"].endswith("-000001")
        assert opened.json()["billing_details"]["email"] == customer.email
        assert mail.outbox[-1].to == [customer.email] and opened.json()["number"] in mail.outbox[-1].subject
        part = admin.post(url("pay", invoice), {"amount": "10.00", "method": "bank_transfer", "reference": "TX1"},
                          format="json")  # fmt: skip
        assert part.status_code == 200, part.content
        assert part.json()["status"] == "open" and part.json()["amount_due"] == "15.19"
        with django_capture_on_commit_callbacks(execute=True):
            rest = admin.post(url("pay", invoice), {"amount": "15.19", "method": "cash"}, format="json")
        assert rest.json()["status"] == "paid" and rest.json()["amount_due"] == "0.00"
        assert "Receipt" in mail.outbox[-1].subject
        assert admin.post(url("pay", invoice), {"amount": "1.00", "method": "cash"}, format="json").status_code == 409
        assert admin.post(url("void", invoice)).status_code == 409

    def test_illegal_transitions_are_409(self, tenant_a, admin):
        invoice = draft(tenant_a)
        assert admin.post(url("void", invoice)).status_code == 409
        assert admin.post(url("pay", invoice), {"amount": "1.00", "method": "cash"}, format="json").status_code == 409
        assert admin.post(url("mark-uncollectible", invoice)).status_code == 409
        assert admin.post(url("credit-notes", invoice), {}, format="json").status_code == 409
        assert admin.post(url("issue", invoice)).status_code == 200
        assert admin.post(url("issue", invoice)).status_code == 409
        assert admin.patch(url("detail", invoice), {"notes": "x"}, format="json").status_code == 409
        assert admin.delete(url("detail", invoice)).status_code == 409
        assert admin.post(url("void", invoice)).status_code == 200
        for action in ("issue", "void", "mark-uncollectible"):
            assert admin.post(url(action, invoice)).status_code == 409, action

    def test_uncollectible_then_paid_or_void(self, tenant_a, admin):
        one, two = issued(tenant_a), issued(tenant_a, customer=customer_of(tenant_a, email="two@example.com"))
        for inv in (one, two):
            assert admin.post(url("mark-uncollectible", inv)).json()["status"] == "uncollectible"
        paid = admin.post(url("pay", one), {"amount": str(one.total), "method": "bank_transfer"}, format="json")
        assert paid.json()["status"] == "paid"
        assert admin.post(url("void", two)).json()["status"] == "void"

    def test_empty_draft_cannot_be_issued_and_drafts_are_editable(self, tenant_a, admin):
        customer = customer_of(tenant_a)
        body = admin.post(url("list"), {"customer": str(customer.pk), "lines": []}, format="json").json()
        invoice = Invoice.all_tenants.get(pk=body["id"])
        assert body["currency"] == "EUR"  # the customer's currency
        assert admin.post(url("issue", invoice)).status_code == 409
        edited = admin.patch(url("detail", invoice), {"lines": [{"description": "A", "unit_price": "3.00"}]},
                             format="json")  # fmt: skip
        assert edited.status_code == 200 and edited.json()["total"] == "3.00"
        assert admin.delete(url("detail", invoice)).status_code == 204

    def test_bad_input_is_400_and_writes_nothing(self, tenant_a, tenant_b, admin):
        customer = customer_of(tenant_a)
        foreign = customer_of(tenant_b, email="f@example.com")
        line = {"description": "X", "unit_price": "1.00"}
        bad_bodies = [
            {"customer": str(foreign.pk), "lines": [line]},
            {"customer": "not-a-uuid", "lines": [line]},
            {"customer": str(customer.pk), "currency": "XXX", "lines": [line]},
            {"customer": str(customer.pk), "lines": [{**line, "unit_price": "-1"}]},
            {"customer": str(customer.pk), "lines": [{**line, "quantity": "0"}]},
            {"customer": str(customer.pk), "lines": [{**line, "tax_rate": "101"}]},
            {"customer": str(customer.pk), "lines": [{**line, "discount": "2.00"}]},
            {"customer": str(customer.pk), "lines": [{"unit_price": "1.00"}]},
            {
                "customer": str(customer.pk),
                "lines": [{**line, "period_start": "2026-02-01", "period_end": "2026-01-01"}],
            },
            {"customer": str(customer.pk)},
        ]
        for body in bad_bodies:
            response = admin.post(url("list"), body, format="json")
            assert response.status_code == 400, (body, response.content)
        with tenant_a.scope():
            assert not Invoice.objects.exists()
        invoice = issued(tenant_a, customer=customer)
        for body in (
            {"amount": "-5", "method": "cash"},
            {"amount": "0", "method": "cash"},
            {"amount": "1.001", "method": "cash"},
            {"method": "cash"},
            {"amount": "1", "method": "gold"},
        ):
            assert admin.post(url("pay", invoice), body, format="json").status_code == 400, body
        with tenant_a.scope():
            assert not Payment.objects.exists()

    def test_numbers_are_per_tenant_gapless_and_formatted(self, tenant_a, tenant_b):
        BillingSettings.objects.create(tenant=tenant_b.tenant, invoice_number_format="B{seq:04}")
        a1, a2 = issued(tenant_a), issued(tenant_a)
        b1 = issued(tenant_b)
        assert a1.number.endswith("-000001") and a2.number.endswith("-000002")
        assert b1.number == "B0001"
        deleted_draft = draft(tenant_a)
        with tenant_a.scope():
            deleted_draft.delete()
        assert issued(tenant_a).number.endswith("-000003")


@pytest.mark.django_db
class TestCredit:
    def test_overpayment_becomes_credit_and_is_applied_to_the_next_invoice(self, tenant_a, admin):
        customer = customer_of(tenant_a)
        first = issued(tenant_a, customer=customer)
        paid = admin.post(url("pay", first), {"amount": str(first.total + D("5.00")), "method": "bank_transfer"},
                          format="json")  # fmt: skip
        assert paid.json()["status"] == "paid"
        assert credit.credit_balance(customer=customer, currency="EUR") == D("5.00")
        second = issued(tenant_a, customer=customer)
        assert second.credit_applied == D("5.00") and second.amount_due == second.total - D("5.00")
        assert credit.credit_balance(customer=customer, currency="EUR") == 0
        voided = admin.post(url("void", second))
        assert voided.json()["status"] == "void" and voided.json()["credit_applied"] == "0.00"
        assert credit.credit_balance(customer=customer, currency="EUR") == D("5.00")

    def test_credit_notes_full_and_per_line(self, tenant_a, admin):
        invoice = issued(tenant_a)
        with tenant_a.scope():
            line = invoice.lines.order_by("position").first()
        partial = admin.post(url("credit-notes", invoice),
                             {"lines": [{"invoice_line": str(line.pk), "amount": "4.00"}], "reason": "Downtime"},
                             format="json")  # fmt: skip
        assert partial.status_code == 201, partial.content
        note = partial.json()
        assert note["number"].startswith("CN-") and note["total"] == "4.84"  # 4.00 + 21%
        too_much = admin.post(
            url("credit-notes", invoice), {"lines": [{"invoice_line": str(line.pk), "amount": "6.01"}]}, format="json"
        )
        assert too_much.status_code == 400
        rest = admin.post(url("credit-notes", invoice), {}, format="json")
        assert rest.status_code == 201
        fresh = admin.get(url("detail", invoice)).json()
        assert fresh["amount_credited"] == fresh["total"] and fresh["amount_due"] == "0.00"
        assert fresh["status"] == "paid"
        assert admin.post(url("credit-notes", invoice), {}, format="json").status_code == 400

    def test_credit_note_on_a_paid_invoice_goes_to_the_balance(self, tenant_a, admin):
        customer = customer_of(tenant_a)
        invoice = issued(tenant_a, customer=customer)
        admin.post(url("pay", invoice), {"amount": str(invoice.total), "method": "cash"}, format="json")
        admin.post(url("credit-notes", invoice), {}, format="json")
        assert credit.credit_balance(customer=customer, currency="EUR") == invoice.total

    def test_refund_keeps_the_invoice_settled(self, tenant_a, admin):
        invoice = issued(tenant_a)
        admin.post(url("pay", invoice), {"amount": str(invoice.total), "method": "bank_transfer"}, format="json")
        with tenant_a.scope():
            payment = Payment.objects.get()
        refund_url = reverse("payment-refund", kwargs={"pk": payment.pk})
        assert admin.post(refund_url, {"amount": "100.00"}, format="json").status_code == 400
        refunded = admin.post(refund_url, {"amount": "5.00", "reason": "Goodwill"}, format="json")
        assert refunded.status_code == 201, refunded.content
        fresh = admin.get(url("detail", invoice)).json()
        assert fresh["status"] == "paid" and fresh["amount_due"] == "0.00"
        assert D(fresh["amount_paid"]) + D(fresh["amount_credited"]) == invoice.total
        payment.refresh_from_db()
        assert payment.status == "partially_refunded" and payment.refunded_amount == D("5.00")
        with tenant_a.scope():
            assert not CreditTransaction.objects.filter(kind="credit_note").exists()

    def test_every_change_is_audited(self, tenant_a, admin):
        invoice = issued(tenant_a)
        admin.post(url("pay", invoice), {"amount": "1.00", "method": "cash"}, format="json")
        actions = set(AuditEvent.objects.filter(tenant=tenant_a.tenant).values_list("action", flat=True))
        assert {"invoice.create", "invoice.issue", "payment.create", "invoice.payment"} <= actions


@pytest.mark.django_db
def test_invoice_in_jpy_and_kwd_round_to_their_minor_units(tenant_a, admin):
    # Unit prices are money in the invoice's currency (whole yen, fils); quantities make the fractions.
    jpy = draft(tenant_a, currency="JPY", lines=[{"description": "X", "quantity": "1.5", "unit_price": "667",
                                                  "tax_rate": "10"}])  # fmt: skip
    body = admin.get(url("detail", jpy)).json()
    assert (body["subtotal"], body["tax_total"], body["total"]) == ("1001", "100", "1101")
    kwd = draft(tenant_a, customer=customer_of(tenant_a, email="k@example.com", currency="KWD"), currency="KWD",
                lines=[{"description": "X", "quantity": "0.5", "unit_price": "2.469", "tax_rate": "5"}])  # fmt: skip
    body = admin.get(url("detail", kwd)).json()
    assert (body["subtotal"], body["tax_total"], body["total"]) == ("1.235", "0.062", "1.297")
    assert body["status"] == InvoiceStatus.DRAFT


@pytest.mark.django_db
def test_a_customer_with_invoices_cannot_be_deleted(tenant_a):
    invoice = issued(tenant_a)
    owner = client_for(tenant_a.owner, tenant_a.tenant)
    response = owner.delete(reverse("customer-detail", kwargs={"pk": invoice.customer_id}))
    assert response.status_code == 409
    assert "invoices" in response.json()["detail"]


@pytest.mark.django_db
def test_pdfs_of_invoices_and_credit_notes(tenant_a, django_capture_on_commit_callbacks):
    import io

    from pypdf import PdfReader

    invoice = draft(tenant_a)
    billing = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
    preview = billing.get(url("pdf", invoice))
    assert preview.status_code == 200 and preview["Content-Type"] == "application/pdf"
    assert "DRAFT" in PdfReader(io.BytesIO(preview.content)).pages[0].extract_text()
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    with django_capture_on_commit_callbacks(execute=True):
        number = admin.post(url("issue", invoice)).json()["number"]
    text = PdfReader(io.BytesIO(billing.get(url("pdf", invoice)).content)).pages[0].extract_text()
    assert number in text and "Hosting" in text and "Amount due" in text
    attachment = mail.outbox[-1].attachments[0]
    assert attachment[0] == f"{number}.pdf" and attachment[1].startswith(b"%PDF")
    note = admin.post(url("credit-notes", invoice), {}, format="json").json()
    pdf = billing.get(reverse("credit-note-pdf", kwargs={"pk": note["id"]}))
    assert pdf.status_code == 200
    assert note["number"] in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant).get(url("pdf", invoice)).status_code == 403
