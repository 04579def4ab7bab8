from django.apps import AppConfig


class MailConfig(AppConfig):
    name = "apps.mail"
    label = "mail"
    verbose_name = "Email"

    def ready(self):
        from . import jobs  # noqa: F401  (job handlers)
