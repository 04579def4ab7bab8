"""The admin site's additions: the dashboard as its index page and the global search page.

The site object is django.contrib.admin's default one, whose class apps.security swaps for the
2FA-requiring OTP site; ``install`` adds this mixin on top of whatever class it has by then, so
the dashboard and search sit behind the same login and second factor as every other page.
"""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path

from . import navigation, search, selectors


class ConsoleSiteMixin:
    site_header = "mPanel operators' console"
    site_title = "mPanel"
    index_title = "Dashboard"
    index_template = "console/dashboard.html"

    def get_urls(self):
        # Before the admin's own patterns: they end in a catch-all.
        return [path("search/", self.admin_view(self.search_view), name="search"), *super().get_urls()]

    def get_app_list(self, request, app_label=None):
        """The index and the sidebar: the operators' sections; an app's own page: its models.
        Either way without the plumbing for operators who are not superusers."""
        superuser = request.user.is_active and request.user.is_superuser
        if app_label is not None:
            apps = super().get_app_list(request, app_label)
            for app in apps:
                app["models"] = navigation.visible_models(app, superuser=superuser)
            return [app for app in apps if app["models"]]
        return navigation.sections(list(self._build_app_dict(request).values()), superuser=superuser)

    def index(self, request, extra_context=None):
        context = {**(extra_context or {}), "dashboard": selectors.dashboard(user=request.user)}
        return super().index(request, context)

    def search_view(self, request):
        query = request.GET.get("q", "").strip()
        groups = search.global_search(query, user=request.user) if query else []
        context = {
            **self.each_context(request),
            "title": f"Search: {query}" if query else "Search",
            "query": query,
            "groups": groups,
            "found": sum(len(g["results"]) for g in groups),
        }
        return TemplateResponse(request, "console/search.html", context)


def install() -> None:
    site = admin.site  # a LazyObject: its __class__ is the wrapped site's class, type() is not
    if not isinstance(site, ConsoleSiteMixin):
        current = site.__class__
        site.__class__ = type(f"Console{current.__name__}", (ConsoleSiteMixin, current), {})
