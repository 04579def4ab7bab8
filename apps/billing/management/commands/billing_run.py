import sys
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from apps.billing.services.billing_run import billing_run
from apps.billing.services.dunning import dunning_run


class Command(BaseCommand):
    help = "Invoice every subscription period due (safe to run again or concurrently), then run dunning."

    def add_arguments(self, parser):
        parser.add_argument("--date", help="Run as of this day (YYYY-MM-DD); default today.")
        parser.add_argument("--no-dunning", action="store_true")

    def handle(self, *args, date=None, no_dunning=False, **options):
        on = None
        if date:
            try:
                on = _parse(date)
            except ValueError as exc:
                raise CommandError(f"--date must be YYYY-MM-DD: {exc}") from exc

        def progress(done: int, total: int) -> None:
            width = 40
            filled = int(width * done / total) if total else width
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} customers")
            if done == total:
                sys.stderr.write("\n")

        result = billing_run(on=on, progress=progress)
        self.stdout.write(
            f"invoices: {result.invoices}, charges: {result.charges}, subscriptions: {result.subscriptions}, "
            f"skipped (locked by another run): {result.skipped_locked}, cancelled at period end: {result.cancelled}"
        )
        if not no_dunning:
            self.stdout.write(f"dunning: {dunning_run(on=on)}")


def _parse(value: str) -> date:
    return date.fromisoformat(value)
