from django.apps import AppConfig


class DomainsConfig(AppConfig):
    name = "apps.domains"
    label = "domains"
    verbose_name = "Domains"

    def ready(self):
        from . import tasks  # noqa: F401  (the daily expiry sweep)
