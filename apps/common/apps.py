from django.apps import AppConfig
from django.db.models.signals import post_migrate


def create_cache_table(sender, using="default", **kwargs) -> None:
    """The embedded default's shared cache lives in a database table (settings.CACHES): `migrate`
    makes it, so no deployment step can be forgotten. A no-op for any other cache backend."""
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)


class CommonConfig(AppConfig):
    name = "apps.common"
    label = "common"
    verbose_name = "Platform"

    def ready(self) -> None:
        post_migrate.connect(create_cache_table, sender=self, dispatch_uid="common.create_cache_table")
