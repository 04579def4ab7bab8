from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", include("apps.security.urls")),  # the 2FA set-up page, before the admin's catch-all
    path("admin/", admin.site.urls),
    path("api/v1/", include("mpanel.api")),
    path("", RedirectView.as_view(url="/api/v1/", permanent=False)),
]

# Under /api/ an unknown URL and an unexpected error answer JSON like every other API error.
handler404 = "apps.common.views.not_found"
handler500 = "apps.common.views.server_error"
