"""The portal realm's authentication: browser sessions for the pages, bearer tokens for the portal API.

Realms never mix:
- the pages read only the portal's own key in Django's session (``SESSION_KEY``), never Django's
  ``_auth_user_id``: a staff login in the same browser opens nothing here, and a portal login sets
  no ``request.user``, so it opens nothing of the staff's (admin, browsable API);
- the portal API authenticates only ``mpc_`` tokens of ``PortalSession(kind="api")`` and nothing else
  (``PortalTokenAuthentication`` is its only authentication class); the staff API's bearer classes do
  not know the ``mpc_`` prefix and refuse it as an unknown session key.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from rest_framework import authentication, exceptions, permissions

from apps.common import context
from apps.tenancy.models import Tenant
from apps.tenancy.scoping import tenant_scope

from . import services
from .models import TOKEN_PREFIX, PortalSession, PortalSettings, PortalUser

T = TypeVar("T")

SESSION_KEY = "mpanel_portal"  # {tenant id: raw web-session secret}


def portal_tenant(slug: str) -> Tenant:
    return get_object_or_404(Tenant, slug=slug, status=Tenant.Status.ACTIVE)


def tenant_of(request, slug: str) -> Tenant:
    """The tenant whose portal this request is for: on a custom domain (``request.portal_domain``, set
    by the white-label middleware with ``apps.portal.host_urls``, whose routes carry an empty slug)
    the host's tenant and only it; on the panel's host the active tenant of the slug. Fail-closed: an
    empty slug without a custom domain, or a slug on a custom domain, is a 404."""
    domain_tenant = getattr(request, "portal_tenant", None) if getattr(request, "portal_domain", None) else None
    if domain_tenant is not None:
        if slug:
            raise Http404("Not found.")
        return domain_tenant
    if not slug:
        raise Http404("Not found.")
    return portal_tenant(slug)


def host_tenant(request) -> Tenant | None:
    """The tenant of the custom portal domain this request came in on (``None`` on the panel's host)."""
    request = getattr(request, "_request", request)  # a DRF request wraps Django's
    return getattr(request, "portal_tenant", None) if getattr(request, "portal_domain", None) else None


def _act_as(user: PortalUser, session: PortalSession) -> None:
    ctx = context.current()
    ctx.actor = user
    ctx.via = "portal"
    ctx.token_id = None  # never a staff token id: nothing of accounts may read this as its session


def web_session(request, tenant: Tenant) -> PortalSession | None:
    secrets = request.session.get(SESSION_KEY) or {}
    session = services.session_for_key(secrets.get(str(tenant.pk), ""))
    if session is None or session.tenant_id != tenant.pk or session.kind != PortalSession.Kind.WEB:
        return None
    return session


def start_web_session(request, tenant: Tenant, raw: str) -> None:
    request.session.cycle_key()  # a new session id at login (fixation)
    secrets = dict(request.session.get(SESSION_KEY) or {})
    secrets[str(tenant.pk)] = raw
    request.session[SESSION_KEY] = secrets


def end_web_session(request, tenant: Tenant) -> None:
    secrets = dict(request.session.get(SESSION_KEY) or {})
    secrets.pop(str(tenant.pk), None)
    request.session[SESSION_KEY] = secrets


def safe_next(request, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return fallback


def portal_page(check: Callable[[PortalUser], bool] | None = None, *, allow_unenrolled: bool = False):
    """A page for a logged-in portal user of the tenant in the URL, inside that tenant's scope.

    Not logged in: to the login page (``?next=``). ``check`` false (the role may not): 403. When the
    tenant requires 2FA, a user without it reaches only the 2FA set-up page."""

    def decorate(view):
        @wraps(view)
        def wrapped(request, tenant_slug: str, *args, **kwargs):
            tenant = tenant_of(request, tenant_slug)
            request.portal_tenant = tenant
            with tenant_scope(tenant):
                session = web_session(request, tenant)
                if session is None:
                    login_url = reverse("portal:login", kwargs={"tenant_slug": tenant.slug})
                    return redirect(f"{login_url}?next={request.get_full_path()}")
                user = session.user
                _act_as(user, session)
                request.portal_user = user
                request.portal_session = session
                if not allow_unenrolled and not user.has_2fa and PortalSettings.of(tenant).require_2fa:
                    return redirect("portal:security", tenant_slug=tenant.slug)
                if check is not None and not check(user):
                    raise PermissionDenied("Your role on this account does not include this page.")
                return view(request, *args, **kwargs)

        return wrapped

    return decorate


def public_page(view):
    """A page of the tenant's portal for visitors (login, sign-up, links from emails)."""

    @wraps(view)
    def wrapped(request, tenant_slug: str, *args, **kwargs):
        tenant = tenant_of(request, tenant_slug)
        request.portal_tenant = tenant
        context.current().via = "portal"
        with tenant_scope(tenant):
            return view(request, *args, **kwargs)

    return wrapped


def sees_money(user: PortalUser) -> bool:
    return user.sees_money


def runs_services(user: PortalUser) -> bool:
    return user.runs_services


def manages_users(user: PortalUser) -> bool:
    return user.manages_users


class PortalTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer mpc_…``: a portal API token, and only that."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header.")
        raw = header[1].decode(errors="replace")
        if not raw.startswith(TOKEN_PREFIX):
            # Credentials of the staff realm (a session key, an ``mp_`` token): refused outright (403),
            # never looked up here.
            raise exceptions.PermissionDenied("The portal API takes a customer's portal token, never a staff key.")
        session = services.session_for_key(raw)
        if session is None or session.kind != PortalSession.Kind.API:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked portal token.")
        on_host = host_tenant(request)
        if on_host is not None and on_host.pk != session.tenant_id:
            # Another tenant's token on this tenant's custom domain: unknown here.
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked portal token.")
        _act_as(session.user, session)
        return session.user, session

    def authenticate_header(self, request):
        return 'Bearer realm="portal"'


class IsPortalUser(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, PortalUser)


def require(check: Callable[[PortalUser], bool], user: PortalUser) -> None:
    if not check(user):
        raise exceptions.PermissionDenied("Your role on this account does not include this.")


def owned(obj: T | None, what: str) -> T:
    """``obj`` found within the customer's own rows (the selectors' ``*_of`` answer None for another
    customer's, a foreign tenant's or a missing row alike), else the portal's 404."""
    if obj is None:
        raise Http404(f"No such {what}.")
    return obj
