"""Custom portal domains: a request whose ``Host`` is a VERIFIED custom domain of an active tenant
gets ``request.portal_tenant`` (that tenant), ``request.portal_domain`` (the name) and
``request.urlconf`` = ``WHITELABEL_PORTAL_URLCONF`` (``apps.portal.host_urls``: that tenant's portal at
``/`` and its portal API, every other path a 404 in its brand: no admin, no staff API, no other
tenant's portal). A name some tenant added but that serves nobody (pending, or its tenant not
active) answers a plain 404 whatever ``ALLOWED_HOSTS`` says. Any other host gets ``None`` for both and
nothing else changes.

Django checks ``Host`` against ``ALLOWED_HOSTS``, a static list, and tenants add domains at run
time: a verified custom domain is an allowed host for its own request (the TXT record proved the
tenant controls it, and it maps to that tenant alone). Every other host is still held to
``ALLOWED_HOSTS``. Runs before ``CommonMiddleware`` (the first to read the host).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponseNotFound

from .selectors import host_is_claimed, normal_host, tenant_for_host

DEFAULT_URLCONF = "apps.portal.host_urls"  # named, not imported: the portal sits above this app


class PortalDomainMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raw = request._get_raw_host()  # Host, or X-Forwarded-Host when USE_X_FORWARDED_HOST says so
        tenant = tenant_for_host(raw)
        request.portal_tenant = tenant
        request.portal_domain = normal_host(raw) if tenant is not None else None
        if tenant is not None:
            request.get_host = lambda: raw  # this verified name is allowed (see above)
            request.urlconf = getattr(settings, "WHITELABEL_PORTAL_URLCONF", DEFAULT_URLCONF)
        elif host_is_claimed(raw):
            # Never the panel under a customer-facing name, nor another tenant's portal.
            return HttpResponseNotFound("<!doctype html><title>Not found</title><h1>Not found</h1>")
        return self.get_response(request)
