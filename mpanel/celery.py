import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mpanel.settings")

app = Celery("mpanel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _usable_connections(sender=None, **kwargs):
    """What Django does at each request, at each task: drop connections that are broken or older
    than CONN_MAX_AGE (and re-arm CONN_HEALTH_CHECKS). Never inside a transaction: an eager task
    (the embedded default) runs inside its caller's."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections, connections

    if not any(conn.in_atomic_block for conn in connections.all(initialized_only=True)):
        close_old_connections()
