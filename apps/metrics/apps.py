from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "apps.metrics"
    label = "metrics"
    verbose_name = "Server metrics"

    def ready(self):
        from . import tasks  # noqa: F401  (periodic tasks)
