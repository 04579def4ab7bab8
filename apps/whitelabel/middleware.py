"""Custom portal domains: a request whose ``Host`` is a VERIFIED custom domain of an active tenant
gets ``request.portal_tenant`` (that tenant) and ``request.portal_domain`` (the name); any other
host, unverified or unknown, gets ``None`` for both and nothing else changes.

Django checks ``Host`` against ``ALLOWED_HOSTS``, a static list, and tenants add domains at run
time: a verified custom domain is an allowed host for its own request (the TXT record proved the
tenant controls it, and it maps to that tenant alone). Every other host is still held to
``ALLOWED_HOSTS``. Runs before ``CommonMiddleware`` (the first to read the host).
"""

from __future__ import annotations

from .selectors import normal_host, tenant_for_host


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
        return self.get_response(request)
