"""How a browser's session calls the API: the API session its login on the browsable API started
(``mpanel.browser``), kept in the server-side Django session as the id of a bearer session (the key
itself never reaches the browser)."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication

from apps.accounts.authentication import LAST_USED_GRANULARITY
from apps.accounts.extensions import SESSION_CHECKS
from apps.accounts.models import AuthToken
from apps.common import context

API_SESSION = "mpanel_api_session"  # the Django session's key holding the AuthToken id of its API session


# --- authentication -----------------------------------------------------------------------------


class BrowserSessionAuthentication(SessionAuthentication):
    """The API session a browser logged in with (``/api/v1/auth/browser/login/``)."""

    def authenticate(self, request):
        session = getattr(request._request, "session", None)
        token_id = session.get(API_SESSION) if session is not None else None
        if not token_id:
            return None
        token = AuthToken.objects.select_related("user").filter(pk=token_id).first()
        if token is None:
            session.pop(API_SESSION, None)
            return None
        # The same checks as a bearer key (revoked, expired, inactive user, then the registered
        # session checks: idle time, the tenant's policy): a session revoked from the security
        # center or the admin ends this browser's login too.
        if not token.is_live or not token.user.is_active:
            session.pop(API_SESSION, None)
            raise exceptions.AuthenticationFailed("Your session has ended: log in again.")
        for check in SESSION_CHECKS:
            check(token, request)
        self.enforce_csrf(request)  # unsafe methods need the CSRF token, as in Django's own forms
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_GRANULARITY:
            AuthToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        ctx = context.current()
        ctx.actor = token.user
        ctx.token_id = token.pk
        return token.user, token


class BrowserSessionScheme(OpenApiAuthenticationExtension):
    target_class = "mpanel.authentication.BrowserSessionAuthentication"
    name = "browserSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "The browser's session after logging in on the browsable API (/api/v1/auth/browser/login/). "
            "Unsafe methods also need the CSRF token (X-CSRFToken header); Swagger UI sends it itself.",
        }
