from django.apps import AppConfig


class SslConfig(AppConfig):
    name = "apps.ssl"
    label = "ssl"
    verbose_name = "SSL certificates"

    def ready(self):
        from . import hooks, jobs  # noqa: F401  (job handlers; the website spec's "tls" part)
