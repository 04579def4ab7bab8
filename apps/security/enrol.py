"""An operator enrols an authenticator (TOTP) from the admin's login page, not only from the shell.

The rule: a device may be added to an account that has NONE, by that account's own session, right
after it proved the password on this page (within ``ENROL_WINDOW``), for an active staff account.
An account that has a device already is never given a second one here: replacing it needs the
current code (the API's ``/security/me/2fa/``) or an operator on the shell (``otp_enrol --replace``).
So a stolen password alone cannot add a device to a protected account; for an account without one
the password was its only factor anyway, and the enrolment is recorded (audit, security event).
"""

from __future__ import annotations

import time

from django import forms
from django.contrib import admin
from django.contrib.auth import authenticate, get_user_model, login
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.common.exceptions import Conflict, InvalidInput

from . import mfa

SESSION_KEY = "mpanel_totp_enrol"
ENROL_WINDOW = 600  # seconds between the password and the confirmed code


class PasswordForm(forms.Form):
    email = forms.EmailField(label="E-mail", widget=forms.EmailInput(attrs={"autofocus": True}))
    password = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput)


class CodeForm(forms.Form):
    code = forms.CharField(label="Code from the app", max_length=8, widget=forms.TextInput(
        attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}))  # fmt: skip


def _pending_user(request):
    """The account that proved its password in this session a moment ago and has no device yet."""
    pending = request.session.get(SESSION_KEY) or {}
    if not pending or time.time() - pending.get("at", 0) > ENROL_WINDOW:
        return None
    user = get_user_model().objects.filter(pk=pending.get("user"), is_active=True, is_staff=True).first()
    if user is None or mfa.has_2fa(user):
        return None
    return user


def _render(request, template: str, **context):
    return TemplateResponse(request, template, {**admin.site.each_context(request), **context})


@never_cache
@csrf_protect
@sensitive_post_parameters("password", "code")
def enrol(request):
    user = _pending_user(request)
    if user is None:
        return _password_step(request)
    if request.method == "POST" and "code" in request.POST:
        form = CodeForm(request.POST)
        if form.is_valid():
            try:
                codes = mfa.totp_confirm(user=user, code=form.cleaned_data["code"])
            except (InvalidInput, Conflict) as exc:
                form.add_error("code", exc.message if hasattr(exc, "message") else str(exc))
            else:
                request.session.pop(SESSION_KEY, None)
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                otp_login(request, TOTPDevice.objects.get(user=user, confirmed=True))
                return _render(request, "admin/security/enrol_done.html", title="Two-factor login is on",
                               codes=codes)  # fmt: skip
        started = request.session.get(SESSION_KEY, {}).get("enrolment")
        return _render(request, "admin/security/enrol.html", title="Set up your authenticator", form=form,
                       enrolment=started, account=user)  # fmt: skip
    enrolment = mfa.totp_enrol(user=user)  # a new secret each time the page is shown: none is left behind
    request.session[SESSION_KEY] = {**request.session[SESSION_KEY], "enrolment": enrolment}
    return _render(request, "admin/security/enrol.html", title="Set up your authenticator", form=CodeForm(),
                   enrolment=enrolment, account=user)  # fmt: skip


def _password_step(request):
    form = PasswordForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        user = authenticate(request, username=form.cleaned_data["email"], password=form.cleaned_data["password"])
        if user is None or not user.is_active or not user.is_staff:
            form.add_error(None, "Please enter the correct e-mail and password of a staff account.")
        elif mfa.has_2fa(user):
            form.add_error(None, "This account has an authenticator already: log in with its code.")
        else:
            request.session.cycle_key()  # a new session id for what is now a half-logged-in session
            request.session[SESSION_KEY] = {"user": str(user.pk), "at": time.time()}
            return redirect("security-totp-enrol")
    return _render(request, "admin/security/enrol_password.html", title="Set up two-factor login", form=form)
