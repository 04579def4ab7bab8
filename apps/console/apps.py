from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operators' control panel: the admin's dashboard, global search and operator groups."""

    name = "apps.console"
    label = "console"

    def ready(self):
        from .site import install

        install()
