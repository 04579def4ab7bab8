"""The API for a person in a browser (mpanel/browser.py, mpanel/authentication.py, mpanel/api.py):
the landing page, the root that names the modules, and the browsable API's own login, with its
two-factor step, which leaves the browser with an API session that obeys CSRF."""

from __future__ import annotations

import base64
import re

import pyotp
import pytest
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.models import AuthToken
from apps.tenancy.roles import Role
from mpanel.authentication import API_SESSION
from mpanel.openapi import MODULES
from tests.conftest import PASSWORD, admin_login

LOGIN = "/api/v1/auth/browser/login"  # slashes are optional: the links have none
LOGOUT = "/api/v1/auth/browser/logout"
CUSTOMERS = "/api/v1/customers/"


def _csrf(client: Client, path: str = LOGIN) -> str:
    page = client.get(path)
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    assert match, page.content[:500]
    return match.group(1).decode()


def _log_in(client: Client, email: str, password: str = PASSWORD, next_url: str = "/api/v1/customers/"):
    token = _csrf(client)
    return client.post(
        LOGIN,
        {"email": email, "password": password, "step": "password", "next": next_url, "csrfmiddlewaretoken": token},
    )


@pytest.fixture
def browser() -> Client:
    return Client(enforce_csrf_checks=True)


def test_the_landing_page_links_what_exists(db, client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for href in ('href="/admin/"', 'href="/api/v1/"', 'href="/api/v1/docs/"', 'href="/api/v1/schema/"'):
        assert href in html, href
    assert "portal" not in html.lower()  # not built yet: never a link to a route that does not exist
    assert "<script" not in html  # the Content Security Policy allows no inline script
    assert "script-src 'self'" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_the_root_names_every_module_and_offers_the_login(client):
    response = client.get("/api/v1/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    html = response.content.decode()
    assert "The default basic root view" not in html and "Django REST framework" not in html
    assert "mPanel API" in html
    for module in MODULES:
        assert module.name.replace("&", "&amp;") in html, module.name
        assert module.description.replace("'", "&#x27;") in html, module.description
    assert f'href="{LOGIN}?next=/api/v1/"' in html
    assert 'href="/api/v1/hosting/websites"' in html and 'href="/api/v1/billing/invoices"' in html
    # The JSON root is unchanged for programs: prefix -> URL.
    assert "customers" in client.get("/api/v1/", HTTP_ACCEPT="application/json").json()


def test_a_login_without_two_factor_gives_the_browser_an_api_session(tenant_a, browser):
    user = tenant_a.users[Role.ADMIN]
    assert browser.get(CUSTOMERS, HTTP_ACCEPT="application/json").status_code == 401
    page = browser.get(LOGIN)
    assert page.status_code == 200 and b'name="email"' in page.content and b"<script" not in page.content
    response = _log_in(browser, user.email)
    assert response.status_code == 302 and response["Location"] == CUSTOMERS
    token = AuthToken.objects.get(user=user, revoked_at__isnull=True)
    assert token.method == "password"
    assert browser.session[API_SESSION] == str(token.pk)  # the id only: the key never reaches the browser
    assert browser.get(CUSTOMERS, HTTP_ACCEPT="application/json").status_code == 200
    html = browser.get(CUSTOMERS, HTTP_ACCEPT="text/html").content.decode()
    assert user.email in html and 'id="mp-logout"' in html and "onclick" not in html


def test_unsafe_methods_of_the_browser_session_need_the_csrf_token(tenant_a, browser):
    _log_in(browser, tenant_a.users[Role.ADMIN].email)
    body = {"name": "Zephyr Widgets", "email": "office@zephyr.example"}
    refused = browser.post(CUSTOMERS, body, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    token = browser.cookies["csrftoken"].value
    created = browser.post(CUSTOMERS, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201, created.content


def test_a_user_with_totp_gets_no_session_without_the_code(tenant_a, browser):
    user = tenant_a.users[Role.ADMIN]
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    step = _log_in(browser, user.email)
    assert step.status_code == 200 and b'name="code"' in step.content
    assert API_SESSION not in browser.session
    assert not AuthToken.objects.filter(user=user).exists()
    assert browser.get(CUSTOMERS, HTTP_ACCEPT="application/json").status_code == 401

    csrf = _csrf(browser)
    wrong = browser.post(LOGIN, {"step": "code", "code": "000000", "csrfmiddlewaretoken": csrf})
    assert wrong.status_code == 400 and b"Invalid or expired" in wrong.content
    assert browser.get(CUSTOMERS, HTTP_ACCEPT="application/json").status_code == 401

    # django-otp holds the device back for a second after a wrong code; a person takes longer.
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    code = pyotp.TOTP(base64.b32encode(device.bin_key).decode()).now()
    done = browser.post(LOGIN, {"step": "code", "code": code, "next": CUSTOMERS, "csrfmiddlewaretoken": _csrf(browser)})
    assert done.status_code == 302 and done["Location"] == CUSTOMERS
    assert AuthToken.objects.get(user=user).method == "totp"
    assert browser.get(CUSTOMERS, HTTP_ACCEPT="application/json").status_code == 200


def test_a_wrong_password_is_refused_and_the_next_url_stays_on_this_site(tenant_a, browser):
    refused = _log_in(browser, tenant_a.users[Role.ADMIN].email, password="not-the-password")
    assert refused.status_code == 400 and b"Unable to log in" in refused.content
    assert API_SESSION not in browser.session
    elsewhere = _log_in(browser, tenant_a.users[Role.ADMIN].email, next_url="https://evil.example/")
    assert elsewhere.status_code == 302 and elsewhere["Location"] == "/api/v1/"


def test_logout_revokes_the_session_and_a_revoked_session_is_refused(tenant_a, browser):
    user = tenant_a.users[Role.ADMIN]
    _log_in(browser, user.email)
    token = AuthToken.objects.get(user=user)
    out = browser.post(LOGOUT, {"csrfmiddlewaretoken": browser.cookies["csrftoken"].value, "next": "/api/v1/"})
    assert out.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert browser.get(CUSTOMERS, HTTP_ACCEPT="application/json").status_code == 401

    # Revoked elsewhere (the security center, the admin): this browser is logged out at once.
    _log_in(browser, user.email)
    AuthToken.objects.filter(user=user).update(revoked_at=token.revoked_at)
    assert browser.get(CUSTOMERS, HTTP_ACCEPT="application/json").status_code == 401


def test_an_admin_session_is_not_an_api_session(tenant_a):
    """The operators' admin login (Django's session) does not open the API: only the API's login does."""
    client = admin_login(Client(), tenant_a.users[Role.ADMIN])
    assert client.get(CUSTOMERS, HTTP_ACCEPT="application/json").status_code == 401
