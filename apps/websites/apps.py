from django.apps import AppConfig


class WebsitesConfig(AppConfig):
    name = "apps.websites"
    label = "websites"
    verbose_name = "Websites"

    def ready(self):
        from apps.names import claims

        from . import jobs  # noqa: F401  (job handlers)
        from .models import WebsiteDomain

        # A live website's hostnames and aliases (the rows go when the site is deleted).
        claims.register(claims.Holder(kind="website", model=WebsiteDomain))
