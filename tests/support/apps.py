from django.apps import AppConfig


class SupportConfig(AppConfig):
    """Test-only models and job handlers (installed by mpanel.settings_test only)."""

    name = "tests.support"
    label = "testsupport"

    def ready(self):
        from . import gadgets, handlers  # noqa: F401
