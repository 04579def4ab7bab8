"""The portal's service pages in Chromium (Playwright, Debian's Chromium, as tests/platform/test_browser.py):
a customer's owner reaches a real runc pod's Restart button with the keyboard alone, the pod's row
follows a change made elsewhere without a reload, and the service pages at 390 px in dark mode do not
scroll sideways and label every control."""

from __future__ import annotations

import pytest

from apps.billing.models import Subscription, SubscriptionStatus
from apps.cloudpods import services as pod_services
from apps.cloudpods.models import CloudPod, PodStatus
from apps.customers.models import Contact
from apps.portal.models import PortalRole, PortalUser
from tests.conftest import make_tenant
from tests.platform.test_browser import CHROMIUM, SCREENSHOTS, TIMEOUT_MS, browser_page  # noqa: F401
from tests.pods_support import node_in, node_root  # noqa: F401

from .support import PASSWORD, catalog, make_customer

pytestmark = pytest.mark.browser

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
  .filter(el => el.tagName === 'BUTTON' ? !el.textContent.trim() && !el.getAttribute('aria-label')
                                        : !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.outerHTML.slice(0, 120))"""


@pytest.fixture
def pod_shop(transactional_db, node_root):  # noqa: F811
    fx = make_tenant("Acme Hosting")
    world = make_customer(fx.tenant, "jane", catalog(fx.tenant))
    Subscription.all_tenants.filter(pk=world.subscription.pk).update(status=SubscriptionStatus.ACTIVE)
    node_in(fx, memory_mb=4096)
    with fx.scope():
        pod = pod_services.pod_create(
            tenant=fx.tenant, name="shop", plan="pod-xs", subscription=str(world.subscription.pk)
        )
        Contact.objects.create(tenant=fx.tenant, customer=world.customer, name="Ana", email="ana@cust.test")
    assert CloudPod.all_tenants.get(pk=pod.pk).status == PodStatus.RUNNING
    return fx, world, pod


def _tab_to(page, name: str, limit: int = 80) -> None:
    """Press Tab until the focused element is the button named ``name`` (keyboard only)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.textContent.trim()") == name:
            return
    raise AssertionError(f"{name!r} is not reachable with the Tab key")


def test_pod_acts_by_keyboard_live_row_and_narrow_pages(pod_shop, live_server, browser_page):  # noqa: F811
    from playwright.sync_api import expect

    fx, world, pod = pod_shop
    page = browser_page
    base = f"{live_server.url}/portal/{fx.tenant.slug}"
    owner: PortalUser = world.users[PortalRole.OWNER]

    page.goto(f"{base}/login/")
    page.get_by_label("Email address").fill(owner.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Services")).to_be_visible()

    page.goto(f"{base}/services/")
    row = page.locator(f"#pod-{pod.pk}")
    expect(row).to_contain_text("live: running")
    _tab_to(page, "Restart shop")
    page.keyboard.press("Enter")
    # The restart runs before the answer here (eager jobs): busybox as PID 1 ignores TERM, so it waits
    # the 5 s grace before KILL.
    expect(page.get_by_text("shop: restart requested.")).to_be_visible(timeout=30000)

    # Suspended elsewhere (the business's staff): the row follows without a reload.
    with fx.scope():
        pod_services.pod_suspend(pod=CloudPod.objects.get(pk=pod.pk))
    expect(page.get_by_role("button", name="Resume shop")).to_be_visible(timeout=max(TIMEOUT_MS, 15000))
    expect(row.locator("[data-pod-runtime]")).to_have_attribute("data-pod-runtime", "paused")
    page.screenshot(path=str(SCREENSHOTS / "portal-pods.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.emulate_media(color_scheme="dark")
    sub = world.subscription.pk
    contact = Contact.all_tenants.get(customer=world.customer)
    for path in ("services", f"services/{sub}", f"services/{sub}/cancel/confirm", "databases", "contacts",
                 f"contacts/{contact.pk}", "profile"):  # fmt: skip
        page.goto(f"{base}/{path}/")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
        assert page.evaluate(UNLABELLED) == [], path
    page.screenshot(path=str(SCREENSHOTS / "portal-contacts-mobile-dark.png"), full_page=True)
