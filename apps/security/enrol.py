"""An operator enrols an authenticator (TOTP) from the admin's login page, not only from the shell.

The rule (docs/security.md):

- Only an active staff account with NO confirmed device gets one here. An account that has a device
  is refused: replacing it needs the current code (the API's ``/security/me/2fa/``) or an operator
  on the shell (``otp_enrol --replace``). So a stolen password alone never adds a device to a
  protected account; for an account without one the password was its only factor anyway.
- The account proves its password on this page first (throttled and locked out by django-axes like
  every login, by e-mail and by address); the session id is then rotated, and the session holds
  the account and the time for ``ENROL_WINDOW`` (10 minutes): after that the password is asked again.
- The secret is made for this session (its device id is kept in the session) and only this session
  can confirm it: a code for another session's enrolment is refused, and the latest enrolment of an
  account replaces an earlier unconfirmed one. A wrong code counts against the device's throttle.
- The first good code confirms the device (a code is never accepted twice), shows the recovery codes
  once, logs the session in as verified (django-otp) and is recorded: audit ``security.mfa_enable``
  and the security event ``mfa.enabled`` (reason ``admin_enrol``).
"""

from __future__ import annotations

import functools
import time

from django import forms
from django.contrib import admin
from django.contrib.auth import authenticate, get_user_model, login
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django_otp.middleware import is_verified as otp_is_verified
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.common.exceptions import Conflict, InvalidInput

from . import mfa

SESSION_KEY = "mpanel_totp_enrol"
ENROL_WINDOW = 600  # seconds between the password and the confirmed code

WRONG_CREDENTIALS = "Please enter the correct e-mail and password of an active staff account."
HAS_DEVICE = "This account has an authenticator already: log in with its code on the login page."
EXPIRED = "More than 10 minutes passed since you entered your password: enter it again."
LOCKED_OUT = "Too many failed attempts. Try again later."
REPLACED = "A newer set-up of this account (another sign-in on this page) replaced this one: scan the new code."


class PasswordForm(forms.Form):
    email = forms.EmailField(label="E-mail", widget=forms.EmailInput(attrs={"autofocus": True}))
    password = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput)


class CodeForm(forms.Form):
    code = forms.CharField(label="Code from the app", max_length=8, widget=forms.TextInput(
        attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}))  # fmt: skip


def _pending(request) -> tuple[object | None, str]:
    """The account that proved its password in this session a moment ago and still has no device,
    or (None, why not) — the why is shown above the password form ('' when nothing was pending)."""
    pending = request.session.get(SESSION_KEY) or {}
    if not pending:
        return None, ""
    if time.time() - pending.get("at", 0) > ENROL_WINDOW:
        request.session.pop(SESSION_KEY, None)
        return None, EXPIRED
    user = get_user_model().objects.filter(pk=pending.get("user"), is_active=True, is_staff=True).first()
    if user is None:
        request.session.pop(SESSION_KEY, None)
        return None, WRONG_CREDENTIALS
    if mfa.has_2fa(user):
        request.session.pop(SESSION_KEY, None)
        return None, HAS_DEVICE
    return user, ""


def _render(request, template: str, status: int = 200, **context):
    return TemplateResponse(request, template, {**admin.site.each_context(request), **context}, status=status)


def _session_device(request, user) -> tuple[TOTPDevice, bool]:
    """The unconfirmed device this session started for ``user``; a new one when it has none, and
    whether it had one that a later enrolment of the account replaced."""
    pending = request.session[SESSION_KEY]
    device = TOTPDevice.objects.filter(pk=pending.get("device") or 0, user=user, confirmed=False).first()
    if device is not None:
        return device, False
    device = TOTPDevice.objects.get(pk=mfa.totp_enrol(user=user)["device_id"])
    request.session[SESSION_KEY] = {**pending, "device": device.pk}
    return device, bool(pending.get("device"))


@never_cache
@csrf_protect
@sensitive_post_parameters("password", "code")
def enrol(request):
    user, why = _pending(request)
    if user is None:
        return _password_step(request, why)
    device, replaced = _session_device(request, user)
    form = CodeForm(request.POST if request.method == "POST" and not replaced else None)
    # A code typed for the key this session no longer has is not tried: the new key is shown instead.
    notice = REPLACED if replaced and request.method == "POST" else ""
    if form.is_valid():  # bound (a POST) and a code was typed
        try:
            codes = mfa.totp_confirm(user=user, code=form.cleaned_data["code"], device_id=device.pk,
                                     via="admin_enrol")  # fmt: skip
        except (InvalidInput, Conflict) as exc:
            form.add_error("code", exc.message)
        else:
            request.session.pop(SESSION_KEY, None)
            # Logged in as verified by this device: django-otp persists ``otp_device`` on login (a
            # new session id again), and the admin's has_permission reads ``is_verified``.
            user.otp_device = TOTPDevice.objects.get(pk=device.pk)
            user.is_verified = functools.partial(otp_is_verified, user)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return _render(request, "admin/security/enrol_done.html", title="Two-factor login is on",
                           codes=codes)  # fmt: skip
    # Refusals answer 200 with the form and its message, as the admin's own login does.
    return _render(request, "admin/security/enrol.html", title="Set up your authenticator",
                   form=form, notice=notice, enrolment=mfa.totp_enrolment(device), account=user)  # fmt: skip


def _password_step(request, why: str = ""):
    form = PasswordForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST" and form.is_valid():
        # As the login (apps/accounts/views.py): django-axes counts the failures by e-mail and address.
        user = authenticate(request, email=form.cleaned_data["email"].lower(), password=form.cleaned_data["password"])
        if getattr(request, "axes_locked_out", False):
            form.add_error(None, LOCKED_OUT)
            status = 429  # kept by apps.accounts.lockout: the page stays in the admin's look
        elif user is None or not user.is_active or not user.is_staff:
            form.add_error(None, WRONG_CREDENTIALS)
        elif mfa.has_2fa(user):
            form.add_error(None, HAS_DEVICE)
        else:
            request.session.cycle_key()  # a new session id for what is now a half-logged-in session
            request.session[SESSION_KEY] = {"user": str(user.pk), "at": time.time()}
            return redirect("security-totp-enrol")
    return _render(request, "admin/security/enrol_password.html", status=status, title="Set up two-factor login",
                   form=form, notice=why)  # fmt: skip
