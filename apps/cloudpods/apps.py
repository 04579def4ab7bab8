from django.apps import AppConfig


class CloudPodsConfig(AppConfig):
    name = "apps.cloudpods"
    label = "cloudpods"
    verbose_name = "CloudPods"

    def ready(self):
        from . import jobs, provisioning  # noqa: F401  (job handlers; the provisioner for CloudPod plans)
