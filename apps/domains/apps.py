from django.apps import AppConfig


class DomainsConfig(AppConfig):
    name = "apps.domains"
    label = "domains"
    verbose_name = "Domains"

    def ready(self):
        from . import jobs, tasks  # noqa: F401  (registrar job handlers; the expiry and auto-renew sweeps)
