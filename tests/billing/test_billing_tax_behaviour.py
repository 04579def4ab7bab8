"""Tax behaviour per tenant (`prices_include_tax` in `/api/v1/billing/settings`): net prices get the
tax on top, gross prices carry it inside (the customer pays the price); each invoice keeps the
behaviour it was made with, and its totals are the sums of its lines either way."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.audit.models import AuditEvent
from apps.billing.amounts import line_amounts
from apps.billing.services import invoices, tenant_settings
from apps.common.exceptions import InvalidInput
from apps.tenancy.roles import Role
from tests.billing_support import customer_of, draft
from tests.conftest import client_for

URL = "/api/v1/billing/settings"


def test_gross_price_carries_its_tax_inside():
    line = line_amounts(quantity=Decimal(1), unit_price=Decimal("121.00"), discount=Decimal(0),
                        tax_rate=Decimal(21), currency="EUR", prices_include_tax=True)  # fmt: skip
    assert (line.amount, line.tax, line.total) == (Decimal("100.00"), Decimal("21.00"), Decimal("121.00"))
    net = line_amounts(quantity=Decimal(1), unit_price=Decimal("121.00"), discount=Decimal(0),
                       tax_rate=Decimal(21), currency="EUR")  # fmt: skip
    assert (net.amount, net.tax, net.total) == (Decimal("121.00"), Decimal("25.41"), Decimal("146.41"))


@given(
    price=st.decimals(min_value=0, max_value=100000, places=2),
    quantity=st.integers(min_value=1, max_value=50),
    rate=st.decimals(min_value=0, max_value=100, places=2),
    off=st.integers(min_value=0, max_value=100),
)
def test_gross_lines_add_up_and_the_customer_pays_the_price(price, quantity, rate, off):
    gross = price * quantity
    discount = (gross * off / 100).quantize(Decimal("0.01"))
    line = line_amounts(quantity=Decimal(quantity), unit_price=price, discount=discount, tax_rate=rate,
                        currency="EUR", prices_include_tax=True)  # fmt: skip
    assert line.total == gross - discount
    assert line.amount - line.discount + line.tax == line.total
    assert 0 <= line.tax <= line.total


@pytest.mark.django_db
def test_the_setting_through_the_api_is_audited_and_honoured_by_new_invoices_only(tenant_a, tenant_b):
    admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
    before = draft(tenant_a)  # net: 10.00 and 9.99 at 21 %
    assert before.total == Decimal("24.19") and not before.prices_include_tax
    answer = admin.patch(URL, {"prices_include_tax": True}, format="json")
    assert answer.status_code == 200 and answer.json()["prices_include_tax"] is True, answer.content
    event = AuditEvent.objects.get(action="billing_settings.update")
    assert event.changes["prices_include_tax"] == [False, True]
    assert admin.patch(URL, {"prices_include_tax": "maybe"}, format="json").status_code == 400
    billing = client_for(tenant_a.users[Role.BILLING], tenant_a.tenant)
    assert billing.patch(URL, {"prices_include_tax": False}, format="json").status_code == 403

    after = draft(tenant_a, customer=customer_of(tenant_a))
    assert after.prices_include_tax and after.total == Decimal("19.99")
    assert after.tax_total == Decimal("1.74") + Decimal("1.73") and after.subtotal == Decimal("16.52")
    # Each invoice keeps its own behaviour: the draft made before still adds the tax on top.
    with tenant_a.scope():
        before = invoices.invoice_update_draft(invoice=before, data={"currency": "EUR"})
    assert before.total == Decimal("24.19")
    got = admin.get(f"/api/v1/billing/invoices/{after.pk}").json()
    assert got["prices_include_tax"] is True and got["total"] == "19.99"
    # Another tenant's invoices are net still.
    assert draft(tenant_b).total == Decimal("24.19")


@pytest.mark.django_db
def test_the_service_refuses_a_non_boolean(tenant_a):
    with pytest.raises(InvalidInput, match="prices_include_tax"):
        tenant_settings.settings_update(tenant=tenant_a.tenant, data={"prices_include_tax": "yes"})
