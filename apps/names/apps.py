from django.apps import AppConfig


class NamesConfig(AppConfig):
    name = "apps.names"
    label = "names"
    verbose_name = "Name claims"
