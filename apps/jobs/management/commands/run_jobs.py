import logging
import signal
import threading
import time

from celery import current_app
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "The embedded default's beat: runs every periodic task of CELERY_BEAT_SCHEDULE in-process at its "
        "interval (job sweeper, billing run, node heartbeats…). Production runs Celery beat and a worker instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run every periodic task once and exit.")

    def handle(self, *args, once: bool, **options):
        # The project's Celery app (mpanel.celery, made current when Django loads mpanel): the apps
        # import nothing of the project package.
        app = current_app
        app.loader.import_default_modules()
        schedule = {
            name: (entry["task"], float(entry["schedule"]))
            for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
            if isinstance(entry["schedule"], int | float)
        }
        due = dict.fromkeys(schedule, 0.0)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        while not stop.is_set():
            for name, (task, interval) in schedule.items():
                if time.monotonic() < due[name]:
                    continue
                close_old_connections()
                try:
                    result = app.tasks[task]()  # runs here, now (no broker in the embedded default)
                    if once:
                        self.stdout.write(f"{name}: {result}")
                except Exception:  # one failing task must not stop the others
                    log.exception("periodic task %s failed", name)
                due[name] = time.monotonic() + interval
            if once:
                return
            stop.wait(1.0)
