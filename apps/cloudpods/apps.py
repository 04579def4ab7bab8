from django.apps import AppConfig


class CloudPodsConfig(AppConfig):
    name = "apps.cloudpods"
    label = "cloudpods"
    verbose_name = "CloudPods"

    def ready(self):
        from . import jobs  # noqa: F401  (registers the cloudpod.* job handlers)
