"""The operators' control panel in a real browser: Playwright driving Debian's Chromium against a
live server, from the 2FA login to actions whose jobs run on a real runc node.

Jobs run in-process (``MPANEL_JOBS_EAGER``, the tests' setting): the live server dispatches each
job once the action's transaction commits, so the suspend job really pauses the runc container
before the next page loads. Screenshots land in var/screenshots/ (ignored by git).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pyotp
import pytest
from django.contrib.auth import get_user_model
from django_otp.plugins.otp_totp.models import TOTPDevice

from agent.runtime import NodeRuntime
from apps.billing.models import Invoice, InvoiceStatus
from apps.billing.services import invoices
from apps.cloudpods import services as pod_services
from apps.cloudpods.models import CloudPod, PodStatus
from apps.customers.models import Customer
from apps.jobs.models import Job, JobStatus
from tests.conftest import PASSWORD, ROOT, make_tenant
from tests.pods_support import node_in, node_root  # noqa: F401
from tests.support.models import JobCall

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "var" / "screenshots"
TIMEOUT_MS = 20_000


@pytest.fixture
def browser_page(monkeypatch):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed: run the tests with `make test` (it installs it)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # synchronous and safe (the live server answers from its own thread).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            yield page
        finally:
            context.close()
            browser.close()


@pytest.fixture
def world(transactional_db, node_root, settings):  # noqa: F811
    """An operator with a TOTP device, and a tenant with a customer, a running pod on a real runc
    node, a failed job and a draft invoice."""
    operator = get_user_model().objects.create_superuser("operator@mpanel.test", PASSWORD)
    device = TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    fx = make_tenant("Browser Hosting")
    node_in(fx, "pod-node-1.example.net")
    with fx.scope():
        customer = Customer.objects.create(
            tenant=fx.tenant, name="Zephyr Widgets", email="billing@zephyr.example", currency="EUR"
        )
        pod = pod_services.pod_create(tenant=fx.tenant, name="zephyr-web", plan="pod-xs")
        failed = Job.objects.create(
            type="test.record",
            payload={"key": "browser-retry"},
            status=JobStatus.FAILED,
            attempts=5,
            max_attempts=5,
            last_error="connection refused",
        )
        draft = invoices.invoice_create(
            tenant=fx.tenant, customer=customer, lines=[{"description": "Web hosting", "unit_price": "19.00"}]
        )
    pod = CloudPod.all_tenants.get(pk=pod.pk)
    assert pod.status == PodStatus.RUNNING, pod.last_error  # provisioned by its job, in-process
    return {
        "operator": operator,
        "secret": base64.b32encode(device.bin_key).decode(),
        "customer": customer,
        "pod": pod,
        "failed": failed,
        "draft": draft,
        "node_root": node_root,
    }


def settings_environment() -> str:
    from django.conf import settings

    return settings.MPANEL_ENVIRONMENT.upper()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _act(page, pk, action: str) -> None:
    """Tick one row of the changelist on screen, choose an action and press Go."""
    page.locator(f'input.action-select[value="{pk}"]').check()
    page.select_option('select[name="action"]', action)
    page.locator('button[name="index"]').click()
    page.wait_for_load_state()


def test_an_operator_runs_the_platform_from_the_browser(world, live_server, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    base = live_server.url

    # 1. Log in with password and the authenticator's code.
    page.goto(f"{base}/admin/login/")
    expect(page.locator("#environment-badge")).to_be_visible()
    page.fill("#id_username", world["operator"].email)
    page.fill("#id_password", PASSWORD)
    page.locator('input[type="submit"]').first.click()
    # django-otp's admin login then asks which of the operator's devices gives the code.
    expect(page.locator("#id_otp_device")).to_contain_text("phone")
    page.select_option("#id_otp_device", label="phone")
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp_token", pyotp.TOTP(world["secret"]).now())
    page.locator('input[type="submit"]').first.click()
    page.wait_for_load_state()
    assert page.url == f"{base}/admin/", page.locator("#content").inner_text()

    # 2. The dashboard: figures, charts drawn by Chart.js served from our static files.
    expect(page.locator("h1")).to_have_text("Dashboard")
    pods = page.locator("#dash-pods")
    expect(pods.locator(".dash-figure").first).to_contain_text("1 pods")
    expect(pods.locator(".dash-figure", has_text="running")).to_contain_text("1")
    expect(page.locator("#dash-jobs .dash-figure", has_text="failed (24h)")).to_contain_text("0")
    expect(page.locator("#dash-jobs canvas[data-drawn='yes']")).to_have_count(1)
    expect(page.locator("#dash-tenants .dash-figure").first).to_contain_text("1 tenants")
    _shot(page, "dashboard")
    # Django's admin follows the browser's dark preference; the environment badge stays.
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(18, 18, 18)"
    expect(page.locator("#environment-badge")).to_have_text(settings_environment())
    _shot(page, "dashboard-dark")
    page.emulate_media(color_scheme="light")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"

    # 3. Search a customer from the header and open it.
    page.fill("#global-search input[name='q']", "zephyr w")
    page.press("#global-search input[name='q']", "Enter")
    page.wait_for_url(re.compile(r"/admin/search/\?q="))
    results = page.locator("#search-results")
    expect(results).to_contain_text("1 result")
    results.get_by_role("link", name=re.compile("Zephyr Widgets")).click()
    expect(page.locator("#id_name")).to_have_value("Zephyr Widgets")
    expect(page.locator("#id_email")).to_have_value("billing@zephyr.example")

    # 4. Open the pod, then suspend it through the action on its list.
    pod = world["pod"]
    page.goto(f"{base}/admin/cloudpods/cloudpod/")
    _shot(page, "cloudpods")
    page.get_by_role("link", name="zephyr-web").click()
    expect(page.locator(".field-status .readonly")).to_have_text("Running")
    expect(page.locator(".field-container_id .readonly")).to_have_text(pod.container_id)
    page.go_back()
    _act(page, pod.pk, "suspend_pods")
    expect(page.locator("ul.messagelist")).to_contain_text("Suspending 1 pod(s).")
    expect(page.locator(f'tr:has(input.action-select[value="{pod.pk}"]) td.field-status')).to_have_text("Suspended")

    # 5. The job appears in the jobs list and finishes; the container is really paused.
    page.goto(f"{base}/admin/jobs/job/?type__exact=cloudpod.suspend")
    row = page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    for _ in range(20):
        if "Succeeded" in row.locator("td.field-status").inner_text():
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(row.locator("td.field-status")).to_have_text("Succeeded")
    _shot(page, "jobs")
    state = NodeRuntime(world["node_root"]).pod_state(pod.container_id)["state"]
    assert state == "paused", state

    # 6. Retry the failed job: it runs again and succeeds.
    failed = world["failed"]
    page.goto(f"{base}/admin/jobs/job/?status__exact=FAILED")
    expect(page.locator(f'input.action-select[value="{failed.pk}"]')).to_have_count(1)
    _act(page, failed.pk, "retry_jobs")
    expect(page.locator("ul.messagelist")).to_contain_text("Retried 1 of 1.")
    page.goto(f"{base}/admin/jobs/job/{failed.pk}/change/")
    expect(page.locator(".field-status .readonly")).to_have_text("Succeeded")
    assert JobCall.objects.filter(key="browser-retry").count() == 1

    # 7. Issue the draft invoice: it gets its number and is open.
    draft = world["draft"]
    page.goto(f"{base}/admin/billing/invoice/?status__exact=draft")
    _act(page, draft.pk, "issue")
    expect(page.locator("ul.messagelist")).to_contain_text("Issued 1 of 1.")
    issued = Invoice.all_tenants.get(pk=draft.pk)
    assert issued.status == InvoiceStatus.OPEN and issued.number
    page.goto(f"{base}/admin/billing/invoice/?q={issued.number}")
    invoice_row = page.locator(f'tr:has(input.action-select[value="{draft.pk}"])')
    expect(invoice_row).to_contain_text(issued.number)
    expect(invoice_row.locator("td.field-status")).to_have_text("Open")
    _shot(page, "invoices")


@pytest.mark.parametrize("path", ["/api/v1/docs/", "/admin/login/", "/api/v1/", "/", "/api/v1/auth/browser/login"])
def test_pages_run_under_their_content_security_policy(transactional_db, live_server, browser_page, path):
    """The policy is enforced by a real browser: nothing on these pages is blocked by it, and
    Swagger UI (its script served as a file of its own) still draws the operations."""
    violations = []
    browser_page.on("console", lambda msg: "Content Security Policy" in msg.text and violations.append(msg.text))
    response = browser_page.goto(live_server.url + path)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    if path == "/api/v1/docs/":
        browser_page.wait_for_selector(".opblock", timeout=TIMEOUT_MS)
    else:
        browser_page.wait_for_load_state("networkidle")
    assert violations == []


def test_a_person_logs_in_on_the_browsable_api_with_two_factor(world, live_server, browser_page):
    """From the landing page to the browsable API, logged in with password and code, then a form
    of the browsable API posts with the session and its CSRF token."""
    from playwright.sync_api import expect

    page, base = browser_page, live_server.url
    operator = world["operator"]
    page.goto(f"{base}/")
    page.get_by_role("link", name="Browsable API").click()
    expect(page.locator("#api-modules")).to_contain_text("CloudPods")
    page.locator("#mp-login").click()
    page.fill("#id_email", operator.email)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#id_code")).to_be_visible()  # no session before the code
    page.fill("#id_code", pyotp.TOTP(world["secret"]).now())
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(f"{base}/api/v1/")
    expect(page.locator("#mp-user")).to_have_text(operator.email)
    _shot(page, "browsable-api")
    page.goto(f"{base}/api/v1/security/me/")
    assert "HTTP 200" in page.locator(".response-info").inner_text()
    page.locator("#mp-logout button").click()
    page.wait_for_load_state()
    expect(page.locator("#mp-login")).to_be_visible()
