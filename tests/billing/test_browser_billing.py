"""The money side of the operator's day in a real browser (Playwright + Debian's Chromium, as
tests/platform/test_browser.py): from a customer's page, create an invoice with two lines, issue it, record
a payment and download its PDF, all by the buttons on the pages. Screenshots at 1440 and 390 px."""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path

import pyotp
import pytest
from django.contrib.auth import get_user_model
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.billing.models import Invoice, InvoiceStatus
from apps.customers.models import Customer
from tests.conftest import PASSWORD, make_tenant
from tests.platform.test_browser import SCREENSHOTS, browser_page  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture
def money_world(transactional_db):
    operator = get_user_model().objects.create_superuser("cashier@mpanel.test", PASSWORD)
    device = TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    fx = make_tenant("Browser Billing")
    with fx.scope():
        customer = Customer.objects.create(
            tenant=fx.tenant, name="Umbrella Ltd", email="ap@umbrella.example", currency="EUR"
        )
    return {"operator": operator, "secret": base64.b32encode(device.bin_key).decode(), "customer": customer}


def test_an_operator_invoices_a_customer_and_takes_the_payment(money_world, live_server, browser_page):  # noqa: F811
    from playwright.sync_api import expect

    page, base = browser_page, live_server.url
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", money_world["operator"].email)
    page.fill("#id_password", PASSWORD)
    page.locator('input[type="submit"]').first.click()
    page.select_option("#id_otp_device", label="phone")
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp_token", pyotp.TOTP(money_world["secret"]).now())
    page.locator('input[type="submit"]').first.click()
    page.wait_for_load_state()

    customer = money_world["customer"]
    page.goto(f"{base}/admin/customers/customer/{customer.pk}/change/")
    expect(page.locator("#customer-summary")).to_be_visible()
    page.locator("#object-action-create_invoice").click()
    page.wait_for_load_state()
    assert "/admin/billing/invoice/add/" in page.url
    for i, (description, quantity, price) in enumerate((("Web hosting", "2", "9.99"), ("Setup", "1", "25.00"))):
        page.fill(f'input[name="lines-{i}-description"]', description)
        page.fill(f'input[name="lines-{i}-quantity"]', quantity)
        page.fill(f'input[name="lines-{i}-unit_price"]', price)
    page.locator('input[name="_save"]').click()
    page.wait_for_load_state()
    invoice = Invoice.all_tenants.get(customer=customer)
    assert invoice.total == Decimal("44.98") and invoice.status == InvoiceStatus.DRAFT

    page.goto(f"{base}/admin/billing/invoice/{invoice.pk}/change/")
    page.locator("#object-action-issue").click()
    page.wait_for_load_state()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    expect(page.locator(".messagelist")).to_contain_text(f"Issued {invoice.number}")

    page.locator("#object-action-record_payment").click()
    page.fill('input[name="amount"]', "44.98")
    page.fill('input[name="reference"]', "TX-4498")
    page.locator("#confirm-yes").click()
    page.wait_for_load_state()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    expect(page.locator(".messagelist")).to_contain_text("Recorded €44.98")

    with page.expect_download() as download:
        page.locator("#object-action-pdf").click()
    path = download.value.path()
    assert download.value.suggested_filename == f"{invoice.number}.pdf"
    assert Path(path).read_bytes()[:5] == b"%PDF-"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SCREENSHOTS / f"invoice-paid-{width}.png"), full_page=True)
        page.goto(f"{base}/admin/customers/customer/{customer.pk}/change/")
        page.screenshot(path=str(SCREENSHOTS / f"customer-home-{width}.png"), full_page=True)
        page.goto(f"{base}/admin/billing/invoice/{invoice.pk}/change/")
