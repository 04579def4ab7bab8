from django.apps import AppConfig


class DnsConfig(AppConfig):
    name = "apps.dns"
    label = "dns"
    verbose_name = "DNS"

    def ready(self):
        from . import jobs  # noqa: F401  (job handlers)
