from django.apps import AppConfig


class DnsConfig(AppConfig):
    name = "apps.dns"
    label = "dns"
    verbose_name = "DNS"

    def ready(self):
        from apps.names import claims

        from . import jobs  # noqa: F401  (job handlers)
        from .models import Zone

        # A zone is served by its node from creation until its delete job removes the row.
        claims.register(claims.Holder(kind="zone", model=Zone))
