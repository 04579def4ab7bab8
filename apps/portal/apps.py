from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "apps.portal"
    label = "portal"
    verbose_name = "Customer portal"

    def ready(self) -> None:
        # The invoice email's signed portal link (billing's INVOICE_LINKS extension point), the OpenAPI
        # security scheme of portal tokens, and custom portal domains' trusted certificates (SSL's and
        # white-label's extension points).
        from . import domain_tls, links, schema  # noqa: F401
