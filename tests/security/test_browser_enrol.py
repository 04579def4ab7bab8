"""An operator without an authenticator enrols one from the admin's login page in a real browser
(Playwright driving Debian's Chromium against a live server, as tests/platform/test_browser.py), then logs in
with a code of it in one submit. The pages run under the Content Security Policy: nothing is blocked.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyotp
import pytest
from django.contrib.auth import get_user_model
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.security.models import SecurityEvent
from tests.conftest import PASSWORD, ROOT

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "var" / "screenshots"
TIMEOUT_MS = 20_000
EMAIL = "first-day@mpanel.test"


@pytest.fixture
def browser_page(monkeypatch):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed: run the tests with `make test` (it installs it)")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the test's own ORM calls, see test_browser.py
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


def test_an_operator_enrols_from_the_login_page_and_logs_in_with_the_app(transactional_db, live_server, browser_page):
    from playwright.sync_api import expect

    operator = get_user_model().objects.create_superuser(EMAIL, PASSWORD)
    page, base = browser_page, live_server.url
    violations: list[str] = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text and violations.append(msg.text))

    # 1. The login page links to the set-up; the password comes first.
    page.goto(f"{base}/admin/login/")
    page.locator("#totp-enrol-link a").click()
    page.wait_for_url(f"{base}/admin/2fa/setup/")
    expect(page.locator("#environment-badge")).to_be_visible()
    page.fill("#id_email", EMAIL)
    page.fill("#id_password", PASSWORD)
    page.locator("#enrol-password-form input[type=submit]").click()

    # 2. The key and its QR code; the person's app (pyotp here) reads the key and gives a code.
    secret_box = page.locator("#totp-secret")
    expect(secret_box).to_be_visible()
    expect(page.locator("#totp-qr svg")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "enrol-key.png"), full_page=True)
    secret = secret_box.inner_text().strip()
    totp = pyotp.TOTP(secret)
    page.fill("#id_code", totp.now())
    page.locator("#enrol-code-form input[type=submit]").click()

    # 3. Recovery codes, shown once; the session is verified: the console opens.
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.screenshot(path=str(SCREENSHOTS / "enrol-done.png"), full_page=True)
    page.locator("#continue-to-console").click()
    page.wait_for_url(f"{base}/admin/")
    expect(page.locator("#login-form")).to_have_count(0)
    assert TOTPDevice.objects.get(user=operator).confirmed
    assert SecurityEvent.objects.filter(user=operator, type="mfa.enabled", reason="admin_enrol").exists()

    # 4. A new browser session logs in with e-mail, password and a code of the app in ONE submit.
    page.context.clear_cookies()
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", EMAIL)
    page.fill("#id_password", PASSWORD)
    # The confirming code's step is spent (a code works once): the app's next one, within tolerance.
    page.fill("#id_otp_token", totp.at(time.time() + totp.interval))
    page.locator("#login-form input[type=submit]").first.click()
    page.wait_for_url(f"{base}/admin/")
    expect(page.locator("#login-form")).to_have_count(0)
    assert violations == []
