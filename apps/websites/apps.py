from django.apps import AppConfig


class WebsitesConfig(AppConfig):
    name = "apps.websites"
    label = "websites"
    verbose_name = "Websites"

    def ready(self):
        from . import jobs  # noqa: F401  (job handlers)
