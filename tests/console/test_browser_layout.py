"""The admin's layout in a real browser (Playwright + Debian's Chromium, as tests/platform/test_browser.py):
at 390 px (a phone) no page scrolls sideways and the dashboard stays short; at 1440 and 1920 px the
header band spans the width with the search box inside it. Screenshots at 390 and 1440 px, light
and dark, are written to var/screenshots/ (ignored by git)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from apps.billing.models import Invoice
from apps.customers.models import Customer
from apps.jobs.models import Job
from apps.tenancy.models import Tenant
from tests.conftest import PASSWORD, ROOT, admin_login, make_tenant
from tests.console.test_admin_presentation import seed_business

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "var" / "screenshots"
TIMEOUT_MS = 20_000
PHONE, LAPTOP, DESKTOP = 390, 1440, 1920
# A phone's dashboard: the figures and lists stacked, the charts short, the full list of sections folded.
MAX_PHONE_DASHBOARD_PX = 4200


@pytest.fixture
def operator_session(transactional_db, live_server):
    """A superuser logged in with 2FA (session made by the test client, cookie handed to the browser)
    and a business with a few months of data."""
    operator = get_user_model().objects.create_superuser("operator@mpanel.test", PASSWORD)
    fx = make_tenant("Layout Hosting International Ltd")
    seeded = seed_business(fx)
    client = admin_login(Client(), operator)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    customer = Customer.all_tenants.filter(tenant=fx.tenant).first()
    job = Job.all_tenants.filter(tenant=fx.tenant).first()
    return {"cookie": cookie, "customer": customer, "invoice": seeded["late"], "job": job}


@pytest.fixture
def browser(monkeypatch):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed: run the tests with `make test` (it installs it)")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _page(browser, live_server, cookie: str, width: int, scheme: str = "light"):
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    context.add_cookies([{"name": django_settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


def _pages(data) -> dict[str, str]:
    def admin_url(model, view, *args):
        return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)

    return {
        "dashboard": reverse("admin:index"),
        "customers": admin_url(Customer, "changelist"),
        "invoices": admin_url(Invoice, "changelist"),
        "jobs": admin_url(Job, "changelist"),
        "customer": admin_url(Customer, "change", data["customer"].pk),
        "invoice": admin_url(Invoice, "change", data["invoice"].pk),
        "job": admin_url(Job, "change", data["job"].pk),
        "tenant": admin_url(Tenant, "change", data["customer"].tenant_id),
        "billing": reverse("admin:app_list", kwargs={"app_label": "billing"}),
        "search": reverse("admin:search") + "?q=acme",
        "not-found": "/admin/no-such-page/",
    }


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("load")
    # The charts are drawn after DOMContentLoaded; wait for them where there are any.
    if page.locator("canvas[data-chart]").count():
        page.wait_for_selector("canvas[data-drawn='yes']", timeout=TIMEOUT_MS)


def _overflow(page) -> dict:
    return page.evaluate(
        """() => {
            const doc = document.scrollingElement;
            const wide = [...document.querySelectorAll('body *')]
              .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1
                            && getComputedStyle(el).position !== 'fixed')
              .slice(0, 5).map(el => el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className);
            return {scroll: doc.scrollWidth, inner: window.innerWidth, wide};
        }"""
    )


def test_no_admin_page_scrolls_sideways_on_a_phone(operator_session, live_server, browser):
    page = _page(browser, live_server, operator_session["cookie"], PHONE)
    for name, path in _pages(operator_session).items():
        _open(page, live_server.url + path)
        found = _overflow(page)
        assert found["scroll"] <= found["inner"], f"{name} ({path}) scrolls sideways: {found}"
        if name == "dashboard":
            height = page.evaluate("document.scrollingElement.scrollHeight")
            assert height <= MAX_PHONE_DASHBOARD_PX, f"the dashboard is {height} px long at {PHONE} px"
            # The list of every section starts folded on a phone; the cards come first.
            assert page.locator("#console-apps").get_attribute("open") is None
    page.context.close()


@pytest.mark.parametrize("width", [LAPTOP, DESKTOP])
def test_the_header_spans_the_width_with_the_search_inside(operator_session, live_server, browser, width):
    page = _page(browser, live_server, operator_session["cookie"], width)
    for path in (reverse("admin:index"), _pages(operator_session)["customers"]):
        _open(page, live_server.url + path)
        box = page.evaluate(
            """() => {
                const r = (s) => document.querySelector(s).getBoundingClientRect();
                return {header: r('#header'), search: r('#global-search'), inner: document.documentElement.clientWidth};
            }"""
        )
        header, search = box["header"], box["search"]
        assert header["left"] <= 0.5 and header["width"] >= box["inner"] - 1, (path, box)
        assert search["left"] >= header["left"] and search["right"] <= header["right"], (path, box)
        assert search["top"] >= header["top"] and search["bottom"] <= header["bottom"], (path, box)
        found = _overflow(page)
        assert found["scroll"] <= found["inner"], (path, found)
    # Wide screens put the cards side by side (at least two in the first row).
    _open(page, live_server.url + reverse("admin:index"))
    tops = page.evaluate("[...document.querySelectorAll('#dashboard .dash-card')].map(c => c.offsetTop)")
    assert sum(1 for top in tops if abs(top - tops[0]) < 1) >= 2, tops
    page.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [PHONE, LAPTOP])
def test_screenshots(operator_session, live_server, browser, width, scheme):
    page = _page(browser, live_server, operator_session["cookie"], width, scheme)
    pages = _pages(operator_session)
    for name in ("dashboard", "invoices", "customer", "not-found"):
        _open(page, live_server.url + pages[name])
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (background == "rgb(18, 18, 18)") == (scheme == "dark"), (name, scheme, background)
        page.screenshot(path=str(SCREENSHOTS / f"layout-{name}-{width}-{scheme}.png"), full_page=True)
    page.context.close()
