from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("mpanel.api")),
    path("", RedirectView.as_view(url="/api/v1/", permanent=False)),
]

# Under /api/ an unknown URL and an unexpected error answer JSON like every other API error.
handler403 = "apps.console.views.forbidden"
handler404 = "apps.console.views.not_found"
handler500 = "apps.console.views.server_error"
