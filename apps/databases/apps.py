from django.apps import AppConfig


class DatabasesConfig(AppConfig):
    name = "apps.databases"
    label = "databases"
    verbose_name = "Hosting databases"

    def ready(self):
        from . import jobs, tasks  # noqa: F401  (job handlers, periodic size refresh)
