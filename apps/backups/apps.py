from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "apps.backups"
    label = "backups"
    verbose_name = "Backups"

    def ready(self):
        from . import hooks, jobs, tasks  # noqa: F401  (the final backup before a delete, job handlers, the schedule)
