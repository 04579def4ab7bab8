"""The portal in Chromium (Playwright, Debian's Chromium, as tests/platform/test_browser.py): an invited
customer sets a password from the email, logs in, sees an invoice, pays it (Stripe Checkout answered by
a local replay of Stripe's API, the payment then confirmed by a signed webhook replay, as Stripe sends
it), watches the thank-you page turn to paid by itself, and sees the service it bought running. The same
pages at 390 px in dark mode do not scroll sideways."""

from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.core import mail

from apps.billing.models import Invoice
from apps.catalog.services import product_create
from apps.customers.models import Customer
from apps.orders.services import order_accept, order_create
from apps.portal import services
from tests.billing.test_billing_webhooks import _StripeReplay, stripe_replay  # noqa: F401  (the fixture)
from tests.billing_support import STRIPE_SECRET
from tests.conftest import make_tenant
from tests.platform.test_browser import CHROMIUM, SCREENSHOTS, TIMEOUT_MS, browser_page  # noqa: F401

from .test_portal_money import pay_by_webhook

pytestmark = pytest.mark.browser

PASSWORD = "my-own-portal-pass-1"


@pytest.fixture
def shop(transactional_db, settings):
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    fx = make_tenant("Acme Hosting")
    with fx.scope():
        plan = product_create(
            tenant=fx.tenant,
            data={
                "name": "Web Hosting",
                "slug": "web",
                "type": "hosting_plan",
                "visibility": "public",
                "prices": [
                    {"currency": "EUR", "cycle": "monthly", "amount": Decimal("8.00"), "setup_fee": Decimal("2.00")}
                ],
            },
        )
        customer = Customer.objects.create(name="Jane Doe", email="jane@cust.test", currency="EUR")
        order = order_accept(
            order=order_create(
                tenant=fx.tenant,
                customer=customer,
                items=[{"product": plan, "cycle": "monthly", "config": {"domain": "jane.example"}}],
            )
        )
        mail.outbox.clear()
        services.portal_user_invite(customer=customer, email="jane@cust.test", role="owner", name="Jane")
    return fx, order


def test_an_invited_customer_pays_an_invoice_and_sees_the_service(shop, live_server, browser_page, stripe_replay):  # noqa: F811
    from playwright.sync_api import expect

    fx, order = shop
    page = browser_page
    base = live_server.url
    invoice = Invoice.all_tenants.get(pk=order.invoice_id)
    # Stripe's hosted page is not reachable from the tests: a stand-in answers its address.
    page.route(
        "https://checkout.stripe.com/**",
        lambda route: route.fulfill(
            status=200, content_type="text/html", body="<title>Stripe Checkout</title><h1>Pay</h1>"
        ),
    )

    # 1. The invitation email's link: set a password.
    link = re.search(r"https?://\S+/invitation/\S+", mail.outbox[-1].body).group(0)
    page.goto(base + urlsplit(link).path)
    expect(page.get_by_role("heading", name="Set your password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()

    # 2. Log in.
    expect(page.get_by_role("heading", name="Log in to Acme Hosting")).to_be_visible()
    page.get_by_label("Email address").fill("jane@cust.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Invoices due")).to_be_visible()

    # 3. The invoice, then pay: to Stripe's page.
    page.get_by_role("link", name=invoice.number).first.click()
    expect(page.get_by_role("heading", name=f"Invoice {invoice.number}")).to_be_visible()
    expect(page.get_by_text("€10.00").first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "portal-invoice.png"), full_page=True)
    page.get_by_role("button", name=re.compile(r"^Pay ")).click()
    page.wait_for_url("https://checkout.stripe.com/**")
    _path, form, _headers = _StripeReplay.requests[-1]
    success = form["success_url"][0]

    # 4. Stripe sends us to the success page; the webhook arrives meanwhile; the page sees it by itself.
    page.goto(base + urlsplit(success).path)
    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    pay_by_webhook(invoice)
    expect(page.locator("[data-poll-finished]")).to_contain_text("is paid", timeout=TIMEOUT_MS)

    # 5. The service it paid for is live.
    page.get_by_role("link", name="Services").click()
    row = page.get_by_role("row", name=re.compile("Web Hosting"))
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text("jane.example")
    page.screenshot(path=str(SCREENSHOTS / "portal-services.png"), full_page=True)

    # 6. Narrow and dark: nothing scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    page.emulate_media(color_scheme="dark")
    for path in ("dashboard", "invoices", f"invoices/{invoice.pk}", "services", "security"):
        page.goto(f"{base}/portal/{fx.tenant.slug}/{path}/")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)", background
    page.screenshot(path=str(SCREENSHOTS / "portal-mobile-dark.png"), full_page=True)
