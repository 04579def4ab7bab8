from django.contrib import admin
from django.urls import include, path

from apps.common.routing import include_indexed

from .browser import landing

urlpatterns = [
    path("", include("apps.security.urls")),  # the 2FA set-up page, before the admin's catch-all
    path("admin/", admin.site.urls),
    include_indexed("api/v1/", "mpanel.api"),
    path("brand/", include("apps.whitelabel.urls")),  # tenants' logos, public (customers' e-mails show them)
    # The customer portal of each tenant (apps/portal): its customers' own realm.
    path("portal/", include("apps.portal.urls")),
    # Where a person lands: links to the admin, the browsable API and its reference.
    path("", landing, name="landing"),
]

# Under /api/ an unknown URL and an unexpected error answer JSON like every other API error.
handler403 = "apps.console.views.forbidden"
handler404 = "apps.console.views.not_found"
handler500 = "apps.console.views.server_error"
