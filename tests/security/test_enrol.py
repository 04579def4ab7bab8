"""An operator enrols an authenticator from the admin's login page (/admin/2fa/setup/, apps/security/enrol.py).

The rule: an active staff account with no confirmed device, proving its password on that page
(throttled by django-axes like the login; the session id is rotated), may within 10 minutes add one
device from that same session, confirmed by its first code. Everything else is refused with a
message and leaves nothing behind. Also: the admin login takes one submit when the operator has one
device (django-otp otherwise asks to pick it first).
"""

from __future__ import annotations

import base64
import re
import time

import pyotp
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.audit.models import AuditEvent
from apps.security import enrol
from apps.security.models import RecoveryCode, SecurityEvent
from tests.conftest import PASSWORD

URL = "/admin/2fa/setup/"
EMAIL = "new-operator@mpanel.test"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # axes' failure counts live there
    yield
    cache.clear()


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_user(EMAIL, PASSWORD, is_staff=True, full_name="New Operator")


def _page(response, status: int = 200) -> str:
    """The page answered ``status``, in the admin's look, under a CSP its markup satisfies."""
    assert response.status_code == status, response.content[:2000]
    body = response.content.decode()
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";") if part.strip())
    assert policy["script-src"] == "'self'" and policy["object-src"] == "'none'"
    inline = [m for m in re.findall(r"<script\b([^>]*)>", body) if "src=" not in m and "application/json" not in m]
    assert inline == [], "inline scripts the policy blocks"
    assert "admin/css/base" in body and "security/enrol" in body and 'id="environment-badge"' in body
    main = body[body.index('id="content-main"') :]
    assert " style=" not in main, "inline styles: the page's own CSS is static/security/enrol.css"
    return body


def _errors(body: str) -> str:
    return " ".join(re.findall(r'class="(?:errornote[^"]*|errorlist[^"]*)"[^>]*>(.*?)</', body, re.S))


def _prove(client: Client, email: str = EMAIL, password: str = PASSWORD):
    return client.post(URL, {"email": email, "password": password})


def _secret(client: Client) -> str:
    body = _page(client.get(URL))
    return re.search(r'id="totp-secret">([A-Z2-7]+)<', body).group(1)


def _other_code(secret: str) -> str:
    """A 6-digit code that is not valid now (nor in the windows around now)."""
    totp = pyotp.TOTP(secret)
    near = {totp.at(time.time() + totp.interval * step) for step in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in near)


def _nothing_made(user) -> None:
    assert not TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    assert not RecoveryCode.objects.filter(user=user).exists()
    assert not SecurityEvent.objects.filter(user=user, type="mfa.enabled").exists()


def test_the_login_page_links_to_the_set_up(operator, client):
    body = client.get("/admin/login/").content.decode()
    assert f'href="{URL}"' in body and 'id="totp-enrol-link"' in body
    # An operator without a device who tries to log in is sent there, not asked to pick from no devices.
    body = client.post("/admin/login/", {"username": EMAIL, "password": PASSWORD, "otp_token": "123456"})
    assert "no authenticator app yet" in body.content.decode() and f'href="{URL}"' in body.content.decode()


def test_an_operator_without_a_device_enrols_and_is_logged_in_verified(operator):
    client = Client()
    body = _page(client.get(URL))
    assert 'id="enrol-password-form"' in body and "/admin/login/" in body
    before = client.session.session_key  # a session exists before the password: its id must change
    assert before and client.cookies[settings.SESSION_COOKIE_NAME].value == before
    proved = _prove(client)
    assert proved.status_code == 302 and proved["Location"] == URL
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != before

    body = _page(client.get(URL))
    assert EMAIL in body and "<svg" in body and 'id="enrol-code-form"' in body
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', body).group(1)
    assert _secret(client) == secret, "reloading the page keeps the key the person may have scanned"
    assert TOTPDevice.objects.filter(user=operator).count() == 1

    done = _page(client.post(URL, {"code": pyotp.TOTP(secret).now()}))
    codes = re.findall(r"<li><code>([a-z2-7-]+)</code></li>", done)
    assert len(codes) == 10 and 'id="continue-to-console"' in done
    device = TOTPDevice.objects.get(user=operator)
    assert device.confirmed
    assert RecoveryCode.objects.filter(user=operator, used_at__isnull=True).count() == 10
    # The session is logged in and verified: the console opens.
    assert client.get("/admin/").status_code == 200
    actions = set(AuditEvent.objects.filter(actor=operator).values_list("action", flat=True))
    assert {"security.totp_enrol", "security.mfa_enable"} <= actions
    event = SecurityEvent.objects.get(user=operator, type="mfa.enabled")
    assert event.reason == "admin_enrol"
    # The recovery codes are shown once: the page now asks for a password, and refuses this account.
    again = _page(client.get(URL))
    assert 'id="enrol-password-form"' in again and not any(c in again for c in codes)
    refused = _page(_prove(client))
    assert enrol.HAS_DEVICE in _errors(refused)


@pytest.mark.parametrize("case", ["wrong_password", "unknown", "inactive", "not_staff"])
def test_only_the_password_of_an_active_staff_account_opens_the_set_up(operator, case):
    if case == "inactive":
        operator.is_active = False
        operator.save(update_fields=["is_active"])
    if case == "not_staff":
        operator.is_staff = False
        operator.save(update_fields=["is_staff"])
    email = "nobody@mpanel.test" if case == "unknown" else EMAIL
    password = "not-the-password" if case == "wrong_password" else PASSWORD
    client = Client()
    body = _page(_prove(client, email, password))
    assert enrol.WRONG_CREDENTIALS in _errors(body)
    assert enrol.SESSION_KEY not in client.session
    assert 'id="enrol-password-form"' in _page(client.get(URL))
    assert not TOTPDevice.objects.exists()
    _nothing_made(operator)


def test_an_account_that_has_a_device_is_refused(operator):
    existing = TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    client = Client()
    body = _page(_prove(client))
    assert enrol.HAS_DEVICE in _errors(body)
    assert list(TOTPDevice.objects.filter(user=operator)) == [existing]
    assert client.post(URL, {"code": "123456"}).status_code == 200  # still the password form
    assert list(TOTPDevice.objects.filter(user=operator)) == [existing]


def test_a_device_confirmed_elsewhere_meanwhile_ends_the_set_up(operator):
    client = Client()
    _prove(client)
    secret = _secret(client)
    TOTPDevice.objects.filter(user=operator).update(confirmed=True)  # e.g. through the API meanwhile
    body = _page(client.post(URL, {"code": pyotp.TOTP(secret).now()}))
    assert enrol.HAS_DEVICE in _errors(body) and "recovery-codes" not in body


def test_the_password_is_asked_again_after_ten_minutes(operator):
    client = Client()
    _prove(client)
    secret = _secret(client)
    session = client.session
    session[enrol.SESSION_KEY] = {**session[enrol.SESSION_KEY], "at": session[enrol.SESSION_KEY]["at"] - 601}
    session.save()
    body = _page(client.post(URL, {"code": pyotp.TOTP(secret).now()}))
    assert enrol.EXPIRED in _errors(body) and 'id="enrol-password-form"' in body
    _nothing_made(operator)
    assert client.get("/admin/").status_code == 302  # not logged in


def test_a_wrong_first_code_is_refused_and_counted(operator):
    client = Client()
    _prove(client)
    secret = _secret(client)
    body = _page(client.post(URL, {"code": _other_code(secret)}))
    assert "The code does not match" in _errors(body) and 'id="totp-secret"' in body
    assert re.search(r'id="totp-secret">([A-Z2-7]+)<', body).group(1) == secret  # the same key, to try again
    assert TOTPDevice.objects.get(user=operator).throttling_failure_count == 1  # kept although refused
    body = _page(client.post(URL, {"code": "12ab"}))
    assert _errors(body)
    _nothing_made(operator)
    assert client.get("/admin/").status_code == 302


def test_a_code_is_accepted_once(operator):
    """The code that confirmed the device cannot log in to the admin again (django-otp's last step)."""
    client = Client()
    _prove(client)
    secret = _secret(client)
    code = pyotp.TOTP(secret).now()
    client.post(URL, {"code": code})
    assert TOTPDevice.objects.get(user=operator).confirmed
    replay = Client().post("/admin/login/", {"username": EMAIL, "password": PASSWORD, "otp_token": code})
    assert replay.status_code == 200 and "Invalid token" in replay.content.decode()
    # And posting it to the set-up page again, from the same session, makes nothing.
    assert "recovery-codes" not in client.post(URL, {"code": code}).content.decode()
    assert RecoveryCode.objects.filter(user=operator).count() == 10


def test_another_session_cannot_confirm_this_sessions_device(operator):
    mine, other = Client(), Client()
    _prove(mine)
    secret = _secret(mine)
    code = pyotp.TOTP(secret).now()
    # A session that did not prove the password gets the password form, whatever it posts.
    body = _page(other.post(URL, {"code": code}))
    assert 'id="enrol-password-form"' in body
    _nothing_made(operator)
    # One that proved it too gets a key of its own; a code of the first session's key is refused.
    _prove(other)
    assert _secret(other) != secret
    body = _page(other.post(URL, {"code": code}))
    assert "The code does not match" in _errors(body)
    _nothing_made(operator)
    # The latest set-up replaced the first session's: it is told so and shown a new key.
    body = _page(mine.post(URL, {"code": code}))
    assert enrol.REPLACED in _errors(body)
    _nothing_made(operator)
    assert TOTPDevice.objects.filter(user=operator).count() == 1


def test_the_password_step_is_locked_out_like_the_login(operator):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _page(_prove(client, password="not-the-password"))
    # The failure that reaches the limit is answered with the lockout, and so is the right password.
    assert enrol.LOCKED_OUT in _errors(_page(_prove(client, password="not-the-password"), status=429))
    body = _page(_prove(client), status=429)
    assert enrol.LOCKED_OUT in _errors(body)
    assert enrol.SESSION_KEY not in client.session
    assert SecurityEvent.objects.filter(type="login.locked_out", email=EMAIL).exists()
    assert SecurityEvent.objects.filter(type="login.failure", email=EMAIL).count() >= settings.AXES_FAILURE_LIMIT
    _nothing_made(operator)


# --- the admin login: one submit with one device ------------------------------------------------


def _login(client: Client, **data):
    return client.post("/admin/login/?next=/admin/", {"username": EMAIL, "password": PASSWORD, **data})


def test_one_device_logs_in_with_one_submit_and_the_code_is_still_required(operator):
    device = TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    secret = base64.b32encode(device.bin_key).decode()
    without = _login(Client())
    assert without.status_code == 200 and "Please enter your OTP token" in without.content.decode()
    client = Client()
    response = _login(client, otp_token=pyotp.TOTP(secret).now())
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    wrong = Client()
    assert "Invalid token" in _login(wrong, otp_token=_other_code(secret)).content.decode()
    assert wrong.get("/admin/").status_code == 302


def test_with_two_devices_the_operator_still_picks_one(operator):
    first = TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    TOTPDevice.objects.create(user=operator, name="tablet", confirmed=True)
    code = pyotp.TOTP(base64.b32encode(first.bin_key).decode()).now()
    response = _login(Client(), otp_token=code)
    assert response.status_code == 200 and "Please select a device" in response.content.decode()
    client = Client()
    assert _login(client, otp_token=code, otp_device=first.persistent_id).status_code == 302
