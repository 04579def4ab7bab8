import pytest

from apps.billing.api import CreditNoteViewSet, InvoiceViewSet, PaymentViewSet
from apps.billing.models import Invoice
from apps.billing.services import credit_notes, invoices, payments
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.billing_support import customer_of, draft


class TestInvoiceApi(ApiTestCase):
    viewset = InvoiceViewSet
    basename = "invoice"
    roles = {
        "list": Role.BILLING,
        "retrieve": Role.BILLING,
        "create": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    @pytest.fixture(autouse=True)
    def _customer(self, tenant_a):
        self.customer = customer_of(tenant_a)

    def make(self, fx, seq):
        return invoices.invoice_create(
            tenant=fx.tenant,
            customer=self.customer,
            lines=[{"description": f"Line {seq}", "quantity": 1, "unit_price": "5.00"}],
        )

    def create_payload(self, fx, seq):
        return {
            "customer": str(self.customer.pk),
            "currency": "EUR",
            "lines": [{"description": f"Item {seq}", "quantity": "2", "unit_price": "9.99", "tax_rate": "20"}],
        }

    def update_payload(self, fx, obj, seq):
        return {"notes": f"Note {seq}", "lines": [{"description": "Changed", "unit_price": "1.50"}]}

    def created_object(self, response):
        return Invoice.all_tenants.get(pk=response.data["id"])


class TestPaymentApi(ApiTestCase):
    viewset = PaymentViewSet
    basename = "payment"
    roles = {"list": Role.BILLING, "retrieve": Role.BILLING}

    def make(self, fx, seq):
        invoice = invoices.invoice_issue(invoice=draft(fx, customer=customer_of(fx, email=f"p{seq}@example.com")))
        return payments.payment_record(invoice=invoice, amount="5.00", method="bank_transfer", reference=f"R{seq}")


class TestCreditNoteApi(ApiTestCase):
    viewset = CreditNoteViewSet
    basename = "credit-note"
    roles = {"list": Role.BILLING, "retrieve": Role.BILLING}

    def make(self, fx, seq):
        invoice = invoices.invoice_issue(invoice=draft(fx, customer=customer_of(fx, email=f"c{seq}@example.com")))
        return credit_notes.credit_note_create(invoice=invoice, reason=f"Credit {seq}")
