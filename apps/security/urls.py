"""The security center's pages outside the admin's own URL patterns (mpanel/urls.py puts them first)."""

from django.urls import path

from . import enrol

urlpatterns = [path("admin/2fa/setup/", enrol.enrol, name="security-totp-enrol")]
