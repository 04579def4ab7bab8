"""An operator's day in a real browser (Playwright + Debian's Chromium, as tests/platform/test_browser.py).

A new operator enrols an authenticator from /admin/2fa/setup/ (the code computed from the secret the
page shows) and is logged in by it; creates a customer; creates a draft invoice with two lines from
the customer's page, issues it, records a payment and downloads its PDF; adds a CloudPod subscription
from the customer's page, pays its first invoice and sees the pod running on a real runc node; then
suspends the pod from its own page (the container is really paused).

Every page visited is then opened again at 390 px (a phone) and 1440 px, light and dark: a
screenshot of each goes to var/screenshots/ (ignored by git) and no page may scroll sideways at
390 px. Jobs run in-process (``MPANEL_JOBS_EAGER``), dispatched when the live server's action commits.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyotp
import pytest
from django.contrib.auth import get_user_model

from agent.runtime import NodeRuntime
from apps.billing.models import Invoice, InvoiceLine, InvoiceStatus, Payment, Subscription
from apps.catalog import services as catalog
from apps.cloudpods.models import CloudPod, PodStatus
from apps.customers.models import Customer
from tests.conftest import PASSWORD, make_tenant
from tests.console.test_browser_layout import SCREENSHOTS, browser  # noqa: F401  (fixture: Debian's Chromium)
from tests.pods_support import node_in, node_root  # noqa: F401  (fixture: a runc node root of this test's own)

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000
PHONE, LAPTOP = 390, 1440


@pytest.fixture
def business(transactional_db, node_root):  # noqa: F811
    """A staff operator without an authenticator yet, and a tenant with a pod node and a CloudPod plan."""
    operator = get_user_model().objects.create_superuser("newop@mpanel.test", PASSWORD)
    fx = make_tenant("Daylight Hosting")
    node_in(fx, "pods-1.daylight.example")
    with fx.scope():
        product = catalog.product_create(tenant=fx.tenant, data={
            "name": "CloudPod XS", "slug": "cloudpod-xs", "type": "cloudpod_plan", "visibility": "public",
            "config": {"plan": "pod-xs"},
            "prices": [{"currency": "EUR", "cycle": "monthly", "amount": Decimal("5.00")}],
        })  # fmt: skip
    return {"operator": operator, "tenant": fx.tenant, "product": product, "node_root": node_root}


class Day:
    """The operator's browser tab, and every page it opened (named, for the screenshots)."""

    def __init__(self, page, base: str):
        self.page, self.base, self.wide = page, base, {}

    def seen(self, name: str) -> None:
        """This page at a phone's and a laptop's width, light and dark: a screenshot of each, and
        at the phone's width a note of any sideways scroll (checked at the end of the day)."""
        page = self.page
        page.wait_for_load_state("load")
        for width in (PHONE, LAPTOP):
            page.set_viewport_size({"width": width, "height": 900})
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                page.screenshot(path=str(SCREENSHOTS / f"day-{name}-{width}-{scheme}.png"), full_page=True)
                if width == PHONE:
                    found = _overflow(page)
                    if found["scroll"] > found["inner"]:
                        self.wide[f"{name} ({scheme}): {page.url}"] = found
        page.emulate_media(color_scheme="light")

    def click(self, name: str) -> None:
        self.page.get_by_role("link", name=name, exact=True).first.click()
        self.page.wait_for_load_state("load")

    def press(self, label: str) -> None:
        self.page.locator(f'input[type="submit"][value="{label}"], button:has-text("{label}")').first.click()
        self.page.wait_for_load_state("load")

    def message(self) -> str:
        return self.page.locator("ul.messagelist").inner_text()

    def autocomplete(self, field: str, text: str) -> None:
        """Choose in one of the admin's autocomplete (select2) fields."""
        self.page.locator(f".field-{field} .select2-selection").click()
        self.page.locator(".select2-search__field").fill(text)
        self.page.locator(".select2-results__option", has_text=text).first.click()


def _overflow(page) -> dict:
    return page.evaluate(
        """() => {
            const wide = [...document.querySelectorAll('body *')]
              .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1
                            && getComputedStyle(el).position !== 'fixed')
              .slice(0, 5).map(el => el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className);
            return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, wide};
        }"""
    )


def test_an_operators_day(business, live_server, browser):  # noqa: F811
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": LAPTOP, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    day = Day(page, live_server.url)
    base = live_server.url
    operator = business["operator"]

    # 1. Log in: the account has no authenticator yet, so it enrols one from the set-up page.
    page.goto(f"{base}/admin/2fa/setup/")
    day.seen("2fa-password")
    page.fill("#id_email", operator.email)
    page.fill("#id_password", PASSWORD)
    page.locator('input[type="submit"]').first.click()
    expect(page.locator("#totp-qr svg")).to_be_visible()
    day.seen("2fa-setup")
    secret = page.locator("#totp-secret").inner_text().strip()
    page.fill("#id_code", pyotp.TOTP(secret).now())
    day.press("Turn on two-factor login")
    expect(page.locator("h1")).to_have_text("Two-factor login is on")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.locator("#continue-to-console").click()
    page.wait_for_url(f"{base}/admin/")
    expect(page.locator("h1")).to_have_text("Dashboard")
    day.seen("dashboard")

    # 2. A new customer.
    page.goto(f"{base}/admin/customers/customer/add/")
    day.seen("customer-add")
    if page.locator("#id_tenant").count():
        page.select_option("#id_tenant", label=business["tenant"].name)
    page.fill("#id_name", "Marie Curie")
    page.fill("#id_email", "marie@curie.example")
    page.select_option("#id_currency", "EUR")
    day.press("Save and continue editing")
    customer = Customer.all_tenants.get(email="marie@curie.example")
    assert customer.tenant_id == business["tenant"].pk and customer.currency == "EUR"
    expect(page.locator("#customer-summary")).to_be_visible()
    day.seen("customer")
    customer_url = page.url

    # 3. An invoice of two lines from the customer's page: saved as a draft, issued, paid, its PDF.
    day.click("Create an invoice")
    day.seen("invoice-add")
    expect(page.locator("#select2-id_customer-container")).to_contain_text("Marie Curie")
    for i, (description, price) in enumerate([("Website redesign", "450.00"), ("Hosting set-up", "49.50")]):
        page.fill(f"#id_lines-{i}-description", description)
        page.fill(f"#id_lines-{i}-unit_price", price)
    page.locator('input[name="_continue"]').click()
    page.wait_for_load_state("load")
    invoice = Invoice.all_tenants.get(customer=customer)
    assert invoice.status == InvoiceStatus.DRAFT and InvoiceLine.all_tenants.filter(invoice=invoice).count() == 2, (
        day.message()
    )
    assert invoice.total == Decimal("499.50"), invoice.total
    day.seen("invoice-draft")
    page.locator("#object-action-issue").click()
    page.wait_for_load_state("load")
    expect(page.locator("ul.messagelist")).to_contain_text("Issued")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.number
    expect(page.locator("div.field-status_badge")).to_contain_text("Open")
    day.seen("invoice-open")
    day.click("Record a payment")
    day.seen("record-payment")
    expect(page.locator("#id_amount")).to_have_value("499.50")
    page.fill("#id_reference", "BANK-2026-001")
    day.press("Record a payment")
    expect(page.locator("ul.messagelist")).to_contain_text("Recorded €499.50")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and Payment.all_tenants.filter(invoice=invoice).count() == 1
    expect(page.locator("div.field-status_badge")).to_contain_text("Paid")
    day.seen("invoice-paid")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PDF").click()
    pdf = Path(download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF") and download.value.suggested_filename == f"{invoice.number}.pdf"

    # 4. A CloudPod subscription from the customer's page; paying its first invoice starts the pod.
    page.goto(customer_url)
    day.click("Add a service")
    day.seen("subscription-add")
    expect(page.locator("#select2-id_customer-container")).to_contain_text("Marie Curie")
    day.autocomplete("product", "CloudPod XS")
    page.locator('input[name="_save"]').click()
    page.wait_for_load_state("load")
    sub = Subscription.all_tenants.get(customer=customer)
    expect(page.locator("ul.messagelist")).to_contain_text("subscription created")
    day.seen("subscription")
    first = Invoice.all_tenants.get(customer=customer, status=InvoiceStatus.OPEN)
    page.goto(customer_url)
    page.locator("#customer-invoices").get_by_role("link", name=first.number).click()
    page.wait_for_load_state("load")
    day.click("Record a payment")
    day.press("Record a payment")
    expect(page.locator("ul.messagelist")).to_contain_text("Recorded")
    sub.refresh_from_db()
    assert sub.status == "active", sub.status
    pod = CloudPod.all_tenants.get(subscription=str(sub.pk))
    assert pod.status == PodStatus.RUNNING, pod.last_error

    # 5. The pod, from the customer's page: running; suspended from its own page.
    page.goto(customer_url)
    page.locator('#customer-services tr[data-section="cloudpods"]').get_by_role("link", name=pod.name).click()
    page.wait_for_load_state("load")
    expect(page.locator("div.field-status")).to_contain_text("Running")
    day.seen("pod-running")
    page.locator("#object-action-suspend").click()
    page.wait_for_load_state("load")
    expect(page.locator("ul.messagelist")).to_contain_text("Suspend")
    pod.refresh_from_db()
    assert pod.status == PodStatus.SUSPENDED, pod.last_error
    state = NodeRuntime(business["node_root"]).pod_state(pod.container_id)["state"]
    assert state == "paused", state
    expect(page.locator("div.field-status")).to_contain_text("Suspended")
    day.seen("pod-suspended")
    context.close()

    # 6. No page of the day scrolled sideways on a phone (screenshots: var/screenshots/day-*.png).
    assert day.wide == {}, f"pages that scroll sideways at {PHONE} px: {day.wide}"
