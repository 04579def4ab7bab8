from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "apps.portal"
    label = "portal"
    verbose_name = "Customer portal"

    def ready(self) -> None:
        # The invoice email's signed portal link (billing's INVOICE_LINKS extension point).
        from . import links, schema  # noqa: F401  (the OpenAPI security scheme of portal tokens)
