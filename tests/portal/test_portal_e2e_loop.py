"""Issue 17's acceptance, the whole loop in Chromium (Playwright, Debian's Chromium, as
tests/platform/test_browser.py): a visitor on a tenant's branded portal signs up, confirms the
address from the emailed link (Django's outbox), orders a hosting plan and a domain, pays (once
staff record a bank transfer; once Stripe Checkout on the tenant's connected account, completed by
a signed Connect webhook replay of Stripe's documented events), watches the provisioning page until
everything is live and the website answers through the real nginx, then downloads the PDF invoice:
it carries the tenant's logo (an image in the PDF) and legal details, and no platform name.

Jobs run in-process once each request's transaction commits (the suite's eager mode): the live
server provisions the plan (website on the nginx fixture, mail domain, zone in PowerDNS) itself.
"""

from __future__ import annotations

import io
import re
from urllib.parse import urlsplit

import pytest
from django.core import mail
from pypdf import PdfReader

from apps.billing.models import Invoice, InvoiceStatus
from apps.hosting.models import AccountStatus, HostingAccount
from apps.orders.models import Order, OrderItem
from apps.portal import services as portal_services
from apps.tenancy.roles import Role
from apps.whitelabel import services as brand_services
from tests.billing_support import connected, stripe_api  # noqa: F401  (fixture)
from tests.conftest import client_for, make_tenant
from tests.dns_support import pdns_node_env, powerdns  # noqa: F401  (fixtures)
from tests.e2e_support import hosting_business, pay_by_connect_replay, pay_by_staff, unique_domain
from tests.platform.test_browser import CHROMIUM, SCREENSHOTS, TIMEOUT_MS, browser_page  # noqa: F401
from tests.platform.test_whitelabel import png
from tests.web_support import nginx_node, web_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

PASSWORD = "my-own-portal-pass-1"
NAMESERVERS = ["ns1.nimbus-hosting.example", "ns2.nimbus-hosting.example"]
LEGAL = {
    "display_name": "Nimbus Hosting", "legal_name": "Nimbus Hosting B.V.", "address_line1": "Keizersgracht 1",
    "postal_code": "1015 CJ", "city": "Amsterdam", "country": "NL", "vat_id": "NL851234567B01",
    "registration_number": "KvK 12345678", "support_email": "billing@nimbus-hosting.example",
    "invoice_footer": "Paid by bank transfer to NL91 ABNA 0417 1643 00.",
}  # fmt: skip


@pytest.fixture
def shop(transactional_db, settings, tmp_path, nginx_node, pdns_node_env):  # noqa: F811
    """A branded hosting business that lets visitors sign up, with nodes, nameservers and a catalog."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MPANEL_DKIM_KEY_BITS = 1024
    settings.MPANEL_MAIL_ARGON2_MEMORY_KB = 8192
    fx = make_tenant("Nimbus Hosting")
    fx.tenant.default_currency = "EUR"  # what its catalog sells in, so a new customer's currency
    fx.tenant.save(update_fields=["default_currency"])
    with fx.scope():
        brand_services.brand_update(tenant=fx.tenant, data=LEGAL)
        brand_services.logo_upload(tenant=fx.tenant, content=png(120, 40))
        portal_services.settings_update(tenant=fx.tenant, allow_signup=True)
    catalog = hosting_business(fx, nameservers=NAMESERVERS)
    mail.outbox.clear()
    return fx, catalog


@pytest.mark.parametrize("paid_by", ["staff", "stripe_checkout"])
def test_a_visitor_signs_up_orders_pays_and_gets_a_live_site_and_a_branded_invoice(
    paid_by,
    shop,
    live_server,
    browser_page,  # noqa: F811
    nginx_node,  # noqa: F811
    stripe_api,  # noqa: F811
    pdns_node_env,  # noqa: F811
):
    from playwright.sync_api import expect

    fx, _catalog = shop
    page = browser_page
    portal = f"{live_server.url}/portal/{fx.tenant.slug}"
    name = unique_domain("jane")
    account = connected(fx, stripe_api, "acct_1E2ePortal00001").account_id if paid_by == "stripe_checkout" else ""
    # Stripe's hosted page is not reachable from the tests: a stand-in answers its address.
    page.route("https://checkout.stripe.com/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<title>Stripe Checkout</title><h1>Pay</h1>"))  # fmt: skip

    # 1. The branded catalog, then sign up.
    page.goto(f"{portal}/catalog/")
    expect(page.get_by_role("heading", name="Web 5")).to_be_visible()
    unbranded(page)
    page.get_by_role("link", name="Create one").click()
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    unbranded(page)
    page.get_by_label("Your name").fill("Jane Doe")
    page.get_by_label("Email address").fill("jane@cust.test")
    page.get_by_label("Country (for tax)").select_option("NL")
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again").fill(PASSWORD)
    page.get_by_role("button", name="Create the account").click()
    expect(page.get_by_text("jane@cust.test").first).to_be_visible()

    # 2. The emailed link confirms the address; then log in.
    sent = [m for m in mail.outbox if "jane@cust.test" in m.to]
    assert sent, [m.subject for m in mail.outbox]
    message = sent[-1]
    assert message.subject == "Confirm your address for Nimbus Hosting"
    assert message.from_email.startswith("Nimbus Hosting <") and message.reply_to == [
        "Nimbus Hosting <billing@nimbus-hosting.example>"
    ]
    for part in (message.subject, message.from_email, message.body, message.alternatives[0][0]):
        assert "mpanel" not in part.lower(), part
    link = re.search(r"https?://\S+/verify/\S+", message.body).group(0)
    page.goto(live_server.url + urlsplit(link).path)
    expect(page.get_by_text("Your address is confirmed")).to_be_visible()
    page.get_by_label("Email address").fill("jane@cust.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Invoices due")).to_be_visible()
    unbranded(page)

    # 3. Order the plan and the domain, to the cart, then check out: the invoice.
    for product, cycle in (("Web 5", "monthly"), ("Domain .example", "annual")):
        page.goto(f"{portal}/catalog/")
        page.get_by_role("link", name=f"Order {product}").click()
        page.get_by_label("Billing cycle").select_option(cycle)
        page.get_by_label("Domain name").fill(name)
        page.get_by_role("button", name="Add to cart").click()
        expect(page.get_by_role("button", name=f"Remove {product}")).to_be_visible()
        unbranded(page)
    expect(page.get_by_text(name).first).to_be_visible()
    page.get_by_role("button", name=re.compile(r"^Check out")).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Invoice "))).to_be_visible()
    unbranded(page)
    order = Order.all_tenants.get(customer__email="jane@cust.test")
    invoice = Invoice.all_tenants.get(pk=order.invoice_id)
    assert invoice.status == InvoiceStatus.OPEN and OrderItem.all_tenants.filter(order=order).count() == 2

    # 4. Pay.
    if paid_by == "staff":
        pay_by_staff(client_for(fx.users[Role.ADMIN], fx.tenant), invoice)
    else:
        page.get_by_role("button", name=re.compile(r"^Pay ")).click()
        page.wait_for_url("https://checkout.stripe.com/**")
        _method, _path, form, on_account = next(r for r in stripe_api.requests if r[1] == "/v1/checkout/sessions")
        assert on_account == account  # the money goes to the tenant's own Stripe account
        page.goto(live_server.url + urlsplit(form["success_url"]).path)
        expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
        pay_by_connect_replay(Invoice.all_tenants.get(pk=invoice.pk), account)
        expect(page.locator("[data-poll-finished]")).to_contain_text("is paid", timeout=TIMEOUT_MS)
    assert Invoice.all_tenants.get(pk=invoice.pk).status == InvoiceStatus.PAID

    # 5. The provisioning page, until everything is live; the website answers through nginx.
    page.goto(f"{portal}/orders/{order.pk}/")
    expect(page.get_by_text("Everything is live.").first).to_be_visible(timeout=TIMEOUT_MS)
    unbranded(page)
    progress = page.locator("#progress")
    for part in (f"Website {name}", f"Mail for {name}", f"Domain {name}"):
        expect(progress).to_contain_text(part)
    hosting = HostingAccount.all_tenants.get(subscription__order_item__order=order)
    assert hosting.status == AccountStatus.ACTIVE and hosting.domain == name
    status, text, _ = nginx_node.wait_until(name, 200, contains=name)
    assert status == 200 and name in text, (status, text[:300])
    assert pdns_node_env.ask(f"{name}.", "NS") == [f"{ns}." for ns in NAMESERVERS]
    page.screenshot(path=str(SCREENSHOTS / f"portal-e2e-{paid_by}.png"), full_page=True)

    # 6. The PDF invoice: the tenant's logo and legal details, no platform name.
    page.goto(f"{portal}/invoices/{invoice.pk}/")
    href = page.get_by_role("link", name="Download PDF").get_attribute("href")
    pdf = page.request.get(live_server.url + href)
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(pdf.body()))
    text = "\n".join(p.extract_text() for p in reader.pages)
    for value in ("Nimbus Hosting B.V.", "Keizersgracht 1", "1015 CJ", "Amsterdam", "NL851234567B01",
                  "KvK 12345678", "NL91 ABNA 0417 1643 00", invoice.number):  # fmt: skip
        assert value in text, (value, text)
    assert "mpanel" not in text.lower()
    assert "mpanel" not in str(reader.metadata or {}).lower()
    assert sum(len(p.images) for p in reader.pages) >= 1  # the logo, an image object


def unbranded(page) -> None:
    """What the customer sees (the text and the title) carries the tenant's brand, never the platform's name."""
    seen = f"{page.title()}\n{page.inner_text('body')}"
    assert "Nimbus Hosting" in seen, page.url
    assert "mpanel" not in seen.lower(), (page.url, seen)


@pytest.mark.django_db
def test_paid_is_not_live_until_what_it_provisions_is_ready(portal, settings):
    """The provisioning page follows the parts a service makes, not only the payment: a paid plan whose
    activation has not run yet (here its job is stored and not run) is not "live"."""
    from tests.portal.support import page_client
    from tests.portal.test_portal_money import pay_by_webhook

    settings.STRIPE_WEBHOOK_SECRET = "whsec_test_secret_for_mpanel"
    a1 = portal[0]
    pay_by_webhook(Invoice.all_tenants.get(pk=a1.order.invoice_id))
    browser = page_client(a1.users["owner"])
    progress = browser.get(f"/portal/{a1.tenant.slug}/orders/{a1.order.pk}/?poll=1").json()
    assert progress["order"] == "completed" and progress["done"] is False, progress
    assert {"name": "Web Hosting", "status": "active"} in progress["services"]
    assert {"name": "Hosting account", "status": "pending"} in progress["services"]
    page = browser.get(f"/portal/{a1.tenant.slug}/orders/{a1.order.pk}/").content.decode()
    assert "See your services" not in page and "Hosting account" in page
