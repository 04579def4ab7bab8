"""The API for a person in a browser: the landing page at ``/``, the browsable API's login and logout,
and the authentication that lets that browser's session call the API.

A browser login goes through the same steps as ``POST /api/v1/auth/login/``: the password (django-axes
lockouts included), then every ``LOGIN_CHALLENGES`` challenge (the security center's two-factor code),
then a bearer session issued by ``apps.accounts.services``. The browser never sees the bearer key: the
server-side Django session keeps the session's id, and ``BrowserSessionAuthentication`` accepts it
with every check a bearer session gets (revoked, expired, idle, the tenant's policy) and Django's CSRF
check on unsafe methods. A session of the admin (Django's own login) is not an API session.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import rotate_token
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import TemplateView

from apps.accounts import services as accounts
from apps.accounts.models import AuthToken, hash_token
from apps.common.exceptions import InvalidInput
from apps.security import mfa

from .authentication import API_SESSION

# The Django session (server-side; the cookie holds only its id) also keeps, between the two steps:
PENDING_MFA = "mpanel_api_mfa"  # the signed challenge of a login waiting for its second factor
INVALID = "Unable to log in with provided credentials."
LOCKED_OUT = "Too many failed login attempts. Try again later."
API_ROOT = "/api/v1/"


# --- login and logout ---------------------------------------------------------------------------


class PasswordForm(forms.Form):
    email = forms.EmailField(max_length=254)
    password = forms.CharField(max_length=4096, strip=False, widget=forms.PasswordInput)


class CodeForm(forms.Form):
    code = forms.CharField(
        max_length=64, label="Authentication code", help_text="The 6 digits of your app, or a recovery code."
    )


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or API_ROOT
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return API_ROOT


def _start_session(request: HttpRequest, raw_key: str) -> HttpResponse:
    token = AuthToken.objects.get(key_hash=hash_token(raw_key))
    # A new session id and CSRF token at the login: a session fixed before it is worth nothing.
    request.session.cycle_key()
    request.session.pop(PENDING_MFA, None)
    request.session[API_SESSION] = str(token.pk)
    rotate_token(request)
    return HttpResponseRedirect(_next(request))


def _page(request: HttpRequest, form: forms.Form, step: str, status: int = 200) -> HttpResponse:
    context = {"form": form, "step": step, "next": _next(request), "name": "Log in"}
    return render(request, "rest_framework/login.html", context, status=status)


@method_decorator([sensitive_post_parameters("password", "code"), csrf_protect, never_cache], name="dispatch")
class LoginView(TemplateView):
    """Step 1: email and password; step 2 (a user with two-factor authentication): the code."""

    template_name = "rest_framework/login.html"
    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.GET.get("restart"):
            request.session.pop(PENDING_MFA, None)
        if request.session.get(PENDING_MFA):
            return _page(request, CodeForm(), "code")
        return _page(request, PasswordForm(), "password")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.POST.get("step") == "code":
            return _second_factor(request)
        form = PasswordForm(request.POST)
        if not form.is_valid():
            return _page(request, form, "password", status=400)
        email, password = form.cleaned_data["email"].lower(), form.cleaned_data["password"]
        user = authenticate(request=request, email=email, password=password)
        if getattr(request, "axes_locked_out", False):
            form.add_error(None, LOCKED_OUT)
            return _page(request, form, "password", status=429)
        if user is None or not user.is_active:
            form.add_error(None, INVALID)
            return _page(request, form, "password", status=400)
        answer: dict[str, Any] = accounts.login_answer(user, request)
        if "key" in answer:
            return _start_session(request, answer["key"])
        if answer.get("mfa_required"):
            request.session[PENDING_MFA] = answer["mfa_token"]
            return _page(request, CodeForm(), "code")
        # A challenge this page does not know how to ask: refuse rather than skip it.
        form.add_error(None, "This account must complete its login through the API (/api/v1/auth/login/).")
        return _page(request, form, "password", status=400)


def _second_factor(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(PENDING_MFA)
    if not pending:
        return _page(request, PasswordForm(), "password")
    form = CodeForm(request.POST)
    if not form.is_valid():
        return _page(request, form, "code", status=400)
    try:
        user, method = mfa.login_complete(mfa_token=pending, code=form.cleaned_data["code"])
    except InvalidInput as exc:
        form.add_error("code", exc.message)
        return _page(request, form, "code", status=400)
    return _start_session(request, accounts.issue_session(user, method=method))


@method_decorator([csrf_protect, never_cache], name="dispatch")
class LogoutView(TemplateView):
    """Revokes the browser's API session (as ``POST /auth/logout/`` revokes a key) and forgets it."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token_id = request.session.get(API_SESSION)
        token = AuthToken.objects.select_related("user").filter(pk=token_id).first() if token_id else None
        if token is not None:
            accounts.logout(user=token.user, token=token)
        request.session.flush()
        return HttpResponseRedirect(_next(request))


# --- landing page -------------------------------------------------------------------------------


def _url(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


@never_cache
def landing(request: HttpRequest) -> HttpResponse:
    """``/``: where each kind of visitor goes next. Links only to what this installation serves."""
    links = [
        ("Operators' console", _url("admin:index"), "The Django admin: every tenant, billing, infrastructure (2FA)."),
        ("Browsable API", API_ROOT, "The REST API in your browser: log in, read and try every module."),
        ("API reference (Swagger UI)", _url("docs"), "Every operation with examples; try them with Authorize."),
        ("API reference (ReDoc)", _url("redoc"), "The same reference as one readable page."),
        ("OpenAPI schema", _url("schema"), "The OpenAPI 3 document, for client generators."),
        ("Customer portal", _url("portal:index"), "For your customers: services, invoices, payments."),
    ]
    context = {
        "links": [{"title": title, "url": url, "text": text} for title, url, text in links if url],
        "environment": settings.MPANEL_ENVIRONMENT,
    }
    return render(request, "landing.html", context)
