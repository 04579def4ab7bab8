from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "apps.security"
    label = "security"
    verbose_name = "Security center"

    def ready(self):
        from . import hooks  # noqa: F401  (signals, and the modules that register on extension points)
