"""The demo business (apps/console/demo.py) and how to log in to it, with a progress bar while it seeds.

In the console (the top layer) because it spans apps. Idempotent: a second run makes nothing new,
resets no password and ends no session; it prints the log-in details again.
"""

from __future__ import annotations

import io

import qrcode
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.test.utils import override_settings
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from apps.console import demo as demo_data
from apps.tenancy.models import Tenant
from apps.tenancy.roles import ORDERED


class Command(BaseCommand):
    help = "Create the demo business (missing parts only) and print how to log in to it."

    def add_arguments(self, parser):
        parser.add_argument("--password", default=None, help="Password of demo logins made now (never reset).")
        parser.add_argument("--if-empty", action="store_true", help="Make nothing when any tenant exists.")
        parser.add_argument("--no-qr", action="store_true", help="Do not draw the TOTP QR code.")

    def handle(self, *args, password=None, if_empty=False, no_qr=False, **options):
        password = password or getattr(settings, "MPANEL_DEMO_PASSWORD", None) or demo_data.DEFAULT_PASSWORD
        demo = demo_data.Demo(password=password)
        if if_empty and Tenant.objects.exists():
            self.stdout.write("Tenants exist already; demo data left as it is (seed_demo adds what is missing).")
        elif settings.EMAIL_BACKEND.endswith("console.EmailBackend"):
            # The demo's own e-mails (invoice issued, paid…) go to files, not over the log-in details.
            with override_settings(EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
                                   EMAIL_FILE_PATH=str(settings.VAR_DIR / "demo-mail")):  # fmt: skip
                self._seed(demo)
        else:
            self._seed(demo)
        self._print_logins(demo, qr=not no_qr)

    def _seed(self, demo: demo_data.Demo) -> None:
        steps = demo_data.steps(demo)
        # On stderr: stdout keeps only the log-in details, for a reader or a script.
        console = Console(stderr=True)
        columns = [TextColumn("{task.description:<45}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn()]  # fmt: skip
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("Seeding the demo", total=len(steps))
            for label, step in steps:
                progress.update(task, description=label)
                step()
                progress.advance(task)
            progress.update(task, description="Demo ready")
        counts = demo_data.counts_of_every_screen(demo.tenant)
        self.stdout.write(self.style.SUCCESS(f"Demo tenant: {demo.tenant.name} (id {demo.tenant.pk}), a local node"))
        self.stdout.write("  " + ", ".join(f"{n} {name}" for name, n in counts.items()))
        for note in demo.notes:
            self.stdout.write(self.style.WARNING(f"  {note}"))

    def _print_logins(self, demo: demo_data.Demo, *, qr: bool) -> None:
        User = get_user_model()
        operator = User.objects.filter(email=demo_data.OPERATOR_EMAIL).first()
        if operator is None:
            return
        # The demo password is shown only for an account that still has it (nothing here resets one).
        emails = [(role.value, f"{role.value.lower()}@demo.mpanel.local") for role in reversed(ORDERED)]
        users = {u.email: u for u in User.objects.filter(email__in=[e for _, e in emails])}
        for role, email in [*emails, ("operator", operator.email)]:
            user = operator if role == "operator" else users.get(email)
            if user is None:
                continue
            shown = demo.password if user.check_password(demo.password) else "(its own password)"
            where = "   (admin at /admin/)" if role == "operator" else ""
            self.stdout.write(f"  {role.lower():<9} {email}  /  {shown}{where}")
        device = demo_data.operator_device(operator)
        if device is None:
            return
        secret = demo_data.totp_secret(device)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Operator's two-factor login (the admin asks for a 6-digit code):"))
        self.stdout.write(f"  TOTP secret: {secret}   (add it to an authenticator app, or scan the code below)")
        self.stdout.write(f"  otpauth URI: {device.config_url}")
        if qr:
            code = qrcode.QRCode(border=1)
            code.add_data(device.config_url)
            out = io.StringIO()
            code.print_ascii(out=out, invert=True)
            self.stdout.write(out.getvalue())
