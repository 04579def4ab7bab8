"""Error pages of a custom portal domain (``host_urls``): in the tenant's brand, never the platform's.

Under ``/api/`` they answer JSON like the rest of the API. A 500 renders no template and reads no
database (whatever failed may fail again): a few plain words under the host's name.
"""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.html import escape

from apps.whitelabel.selectors import brand_for

TEXTS = {
    403: ("Not allowed", "Your role on this account does not include this."),
    404: ("Page not found", "There is no page at this address."),
}


def _page(request, code: int) -> HttpResponse:
    title, text = TEXTS[code]
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": text, "code": "not_found" if code == 404 else "permission_denied"}, status=code)
    tenant = getattr(request, "portal_tenant", None)
    if tenant is None:  # not a custom domain's request: nothing to brand it with
        return HttpResponse(f"<!doctype html><title>{title}</title><h1>{title}</h1>", status=code)
    context = {"brand": brand_for(tenant), "tenant": tenant, "slug": tenant.slug, "title": title, "text": text}
    return render(request, "portal/error.html", context, status=code)


def forbidden(request, exception=None) -> HttpResponse:
    return _page(request, 403)


def not_found(request, exception=None) -> HttpResponse:
    return _page(request, 404)


def server_error(request) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)
    host = escape(getattr(request, "portal_domain", None) or "")
    body = f"<!doctype html><title>Something went wrong</title><h1>Something went wrong</h1><p>{host}</p>"
    return HttpResponse(body, status=500)
