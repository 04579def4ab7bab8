from django.apps import AppConfig


class HostingConfig(AppConfig):
    name = "apps.hosting"
    label = "hosting"
    verbose_name = "Hosting accounts"

    def ready(self):
        # The plan provisioners (billing's PROVISIONERS, PLAN_CHANGES, PAID), the limit check
        # (apps.common.limits.LIMIT_CHECKS) and the job handlers register themselves on import.
        from . import autossl, jobs, limits, provisioning  # noqa: F401
