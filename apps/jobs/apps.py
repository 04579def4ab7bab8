from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self):
        from . import tasks  # noqa: F401  (the Celery entry points, which services.dispatch sends by name)
