import signal
import threading

from django.core.management.base import BaseCommand

from apps.jobs import services


class Command(BaseCommand):
    help = "The embedded default's job loop: re-dispatches due and stale jobs (Celery beat does this in production)."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=2.0)
        parser.add_argument("--once", action="store_true", help="Sweep once and exit.")

    def handle(self, *args, interval: float, once: bool, **options):
        if once:
            self.stdout.write(str(services.sweep()))
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        services.run_due_forever(interval=interval, stop=stop)
