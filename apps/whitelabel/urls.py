from django.urls import re_path

from .views import logo

urlpatterns = [
    re_path(r"^logo/(?P<brand_id>[0-9a-fA-F-]{36})\.(?P<extension>png|jpg|webp|svg)$", logo, name="whitelabel-logo"),
]
