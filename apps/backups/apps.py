from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "apps.backups"
    label = "backups"
    verbose_name = "Backups"

    def ready(self):
        from . import jobs, tasks  # noqa: F401  (job handlers, the schedule's periodic task)
