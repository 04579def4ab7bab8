"""Helpers for the security center's tests: TOTP codes computed from the secret with pyotp."""

from __future__ import annotations

import pyotp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import client_for

ENROL = "/api/v1/security/me/2fa/totp/"
CONFIRM = "/api/v1/security/me/2fa/totp/confirm/"
LOGIN = "/api/v1/auth/login/"
LOGIN_MFA = "/api/v1/auth/login/mfa/"


def code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def next_step(user) -> None:
    """django-otp refuses a code of a time step already used (replay protection); tests that use
    a second code at once move the device's last step back, as if 30 seconds had passed."""
    TOTPDevice.objects.filter(user=user).update(
        last_t=-1, throttling_failure_count=0, throttling_failure_timestamp=None
    )


def enable_2fa(user) -> tuple[str, list[str]]:
    """Turns TOTP on through the API; returns the secret and the recovery codes."""
    client = client_for(user)
    secret = client.post(ENROL).json()["secret"]
    response = client.post(CONFIRM, {"code": code(secret)}, format="json")
    assert response.status_code == 200, response.content
    next_step(user)
    return secret, response.json()["recovery_codes"]
