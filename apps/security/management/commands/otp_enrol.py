"""Gives an operator (or any user) a TOTP device for the admin's two-factor login.

    manage.py otp_enrol operator@mpanel.local

prints the otpauth:// URI (and the secret) to add to an authenticator app; with --replace an
existing device is replaced. The admin's login form then asks for the 6-digit code.
"""

import base64
from binascii import unhexlify

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.audit import services as audit
from apps.security.events import record_event
from apps.security.models import EventType


class Command(BaseCommand):
    help = "Create a confirmed TOTP device for a user and print its otpauth:// URI."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--replace", action="store_true", help="Replace an existing device.")

    @transaction.atomic
    def handle(self, *args, email, replace, **options):
        user = get_user_model().objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user {email}.")
        existing = TOTPDevice.objects.filter(user=user)
        if existing.exists() and not replace:
            raise CommandError(f"{email} has a TOTP device already; use --replace to make a new one.")
        existing.delete()
        device = TOTPDevice.objects.create(user=user, name="Admin (otp_enrol)", confirmed=True)
        audit.record(action="security.mfa_enable", obj=device, tenant=None, actor=None)
        record_event(EventType.MFA_ENABLED, user=user, actor=None, reason="otp_enrol")
        self.stdout.write(device.config_url)
        self.stdout.write(f"secret: {base64.b32encode(unhexlify(device.key)).decode()}")
