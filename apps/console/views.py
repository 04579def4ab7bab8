"""Error pages in the admin's look (mpanel/urls.py ``handler403/404/500``); the API keeps its JSON.

Under /api/ an error answers JSON like every other API error (``apps.common.views``). Everywhere
else (the admin first of all) the page is ``templates/<code>.html``: the admin's header, theme and
environment badge, and for a logged-in operator the sidebar and user tools, so an operator who
opens a page their groups do not allow stays in the console instead of on a bare "403 Forbidden".
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

from apps.common import views as common_views

log = logging.getLogger(__name__)

TITLES = {403: "You may not open this page", 404: "Page not found", 500: "Server error"}


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _context(request: HttpRequest, code: int) -> dict:
    context: dict = {
        "error_code": code,
        "error_title": TITLES[code],
        "title": TITLES[code],
        "request_id": getattr(request, "request_id", ""),
    }
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        try:
            # The admin's own context: the site's names, the sidebar of what the operator may open.
            context = {**admin.site.each_context(request), **context}
        except Exception:  # an error page must render even when the admin's context cannot be built
            log.exception("admin context for the %s page", code)
    else:
        context.update(site_header=admin.site.site_header, site_title=admin.site.site_title, has_permission=False)
    return context


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "You do not have permission to perform this action.",
                             "code": "permission_denied"}, status=403)  # fmt: skip
    return HttpResponse(loader.render_to_string("403.html", _context(request, 403), request), status=403)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return common_views.not_found(request, exception)
    return HttpResponse(loader.render_to_string("404.html", _context(request, 404), request), status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return common_views.server_error(request)
    # No request context and no database: whatever broke the request may break those too.
    context = {
        "error_code": 500,
        "error_title": TITLES[500],
        "title": TITLES[500],
        "site_header": admin.site.site_header,
        "site_title": admin.site.site_title,
        "has_permission": False,
        "MPANEL_ENVIRONMENT": getattr(settings, "MPANEL_ENVIRONMENT", ""),
        "request_id": getattr(request, "request_id", ""),
    }
    try:
        body = loader.render_to_string("500.html", context)
    except Exception:  # the last resort must not raise
        log.exception("rendering the 500 page")
        body = "<h1>Server Error (500)</h1>"
    return HttpResponse(body, status=500)
