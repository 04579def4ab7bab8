"""The URLconf of a tenant's custom portal domain (``my.brand.com``): that tenant's portal and nothing else.

``apps.whitelabel.middleware.PortalDomainMiddleware`` sets ``request.urlconf`` to this module for a
request whose host is a VERIFIED custom domain of an active tenant. Here:

- every portal page is at its own path without ``/portal/<slug>/`` (``/``, ``/login/``, ``/invoices/…``);
- the portal API is at ``/api/v1/portal/…`` (the same views as on the panel's host);
- the brand's logo at ``/brand/logo/…``;
- anything else (``/admin/``, the staff API, ``/accounts/``, ``/portal/<another slug>/``) is a 404 in
  the tenant's brand, so the platform shows nothing of itself there.

The routes are derived from ``apps.portal.urls`` and the portal part of the API, never listed twice:
a page added to the portal is on custom domains at once. Each page's route keeps its ``tenant_slug``
argument, matched by a converter that matches (and reverses to) the empty string, so the views and
the templates' ``{% url 'portal:…' slug %}`` work unchanged and produce host-relative links here; the
views take the tenant from the host (``auth.tenant_of``), never from the URL.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver, include, path, register_converter

from . import domain_tls
from . import urls as portal_urls

SLUG_PART = "<slug:tenant_slug>/"


class HostTenantConverter:
    """The tenant's place in a custom domain's URLs: nothing (the host names the tenant)."""

    regex = ""

    def to_python(self, value: str) -> str:
        return ""

    def to_url(self, value) -> str:
        return ""


register_converter(HostTenantConverter, "portalhost")


def _page_patterns() -> list[URLPattern]:
    rows = []
    for pattern in portal_urls.urlpatterns:
        route = str(pattern.pattern)
        if not route.startswith(SLUG_PART):
            raise ValueError(f"portal route {route!r} does not start with {SLUG_PART!r}")
        rows.append(
            path("<portalhost:tenant_slug>" + route[len(SLUG_PART) :], pattern.callback, pattern.default_args,
                 name=pattern.name)
        )  # fmt: skip
    return rows


def _portal_api(patterns, prefix: str = "") -> Iterator[URLPattern]:
    """The routes of ``/api/v1/`` that begin with ``portal/`` (the portal API), flattened."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern).lstrip("^")
        if isinstance(pattern, URLResolver):
            if route == "":  # the router, mounted at the API's root
                yield from _portal_api(pattern.url_patterns, route)
        elif route.startswith("portal/"):
            yield pattern


def _api_patterns() -> list[URLPattern]:
    root = get_resolver(settings.ROOT_URLCONF)
    for pattern in root.url_patterns:
        if isinstance(pattern, URLResolver) and str(pattern.pattern) == "api/v1/":
            return list(_portal_api(pattern.url_patterns))
    return []


urlpatterns = [
    # The CA's HTTP-01 request for the host's trusted certificate (apps/portal/domain_tls.py).
    path(".well-known/acme-challenge/<str:token>", domain_tls.acme_challenge, name="acme-challenge"),
    path("api/v1/", include(_api_patterns())),
    path("brand/", include("apps.whitelabel.urls")),
    path("", include((_page_patterns(), portal_urls.app_name))),
]

handler403 = "apps.portal.errors.forbidden"
handler404 = "apps.portal.errors.not_found"
handler500 = "apps.portal.errors.server_error"
