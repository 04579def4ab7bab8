"""TOTP two-factor authentication (django-otp), hashed recovery codes and the login's second step."""

from __future__ import annotations

import base64
import secrets
from binascii import unhexlify
from datetime import timedelta

import qrcode
import qrcode.image.svg
from django.core import signing
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.extensions import LOGIN_CHALLENGES
from apps.audit import services as audit
from apps.common import context
from apps.common.exceptions import Conflict, InvalidInput

from .events import record_event
from .models import EventType, MfaChallenge, RecoveryCode, sha256

RECOVERY_CODE_COUNT = 10
MFA_TOKEN_MAX_AGE = timedelta(minutes=5)
MFA_MAX_FAILURES = 5
_SIGNING_SALT = "mpanel.security.mfa-login"
INVALID_MFA = "Invalid or expired two-factor code or login token."


def has_2fa(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def only_device(user, *, for_verify: bool = False) -> TOTPDevice | None:
    """The user's confirmed TOTP device when it is the only one (the admin login picks it).
    ``for_verify`` locks it, as django-otp does for the device it verifies (in its transaction)."""
    devices = TOTPDevice.objects.filter(user=user, confirmed=True)
    devices = list((devices.select_for_update() if for_verify else devices)[:2])
    return devices[0] if len(devices) == 1 else None


def recovery_codes_left(user) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


def _normalise(code: str) -> str:
    return "".join(ch for ch in str(code).lower() if ch.isalnum())


def _new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 80 bits, 16 characters
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def _replace_recovery_codes(user) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    RecoveryCode.objects.bulk_create([RecoveryCode(user=user, code_hash=sha256(_normalise(c))) for c in codes])
    return codes


def _use_recovery_code(user, code: str) -> bool:
    """True once per code: the row is marked used by a conditional update (safe under concurrency)."""
    normalised = _normalise(code)
    if len(normalised) != 16:
        return False
    return bool(
        RecoveryCode.objects.filter(user=user, code_hash=sha256(normalised), used_at__isnull=True).update(
            used_at=timezone.now()
        )
    )


def _verify_totp(user, code: str) -> bool:
    code = str(code).strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return False
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        return bool(device and device.verify_token(code))


def verify_second_factor(user, code: str) -> str | None:
    """'totp' or 'recovery_code' when ``code`` is good, else None. A recovery code works once."""
    if _verify_totp(user, code):
        return "totp"
    if _use_recovery_code(user, code):
        record_event(EventType.RECOVERY_CODE_USED, user=user, data={"left": recovery_codes_left(user)})
        return "recovery_code"
    return None


def require_reauth(user, *, code: str | None, password: str | None) -> None:
    """A sensitive act (turning 2FA off, replacing recovery codes, reading a private key or a backup
    password) needs a current two-factor code or the account password, whatever the session."""
    if code and verify_second_factor(user, code):
        return
    if password and user.check_password(password):
        return
    raise InvalidInput("A current two-factor code or your password is required.", field="code")


def _qr_svg(uri: str) -> str:
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode")


def totp_enrolment(device: TOTPDevice) -> dict:
    """What the person adds to their app for ``device``: its key, the otpauth URI and its QR code."""
    uri = device.config_url
    return {"device_id": str(device.pk), "secret": base64.b32encode(unhexlify(device.key)).decode(),
            "otpauth_uri": uri, "qr_svg": _qr_svg(uri)}  # fmt: skip


@transaction.atomic
def totp_enrol(*, user) -> dict:
    """Starts (or restarts) enrolment with a new secret; 2FA is on only after ``totp_confirm``.

    Any earlier unconfirmed device of the user goes: only the latest enrolment can be confirmed."""
    if has_2fa(user):
        raise Conflict("Two-factor authentication is already on; turn it off first.", code="mfa_already_enabled")
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    audit.record(action="security.totp_enrol", obj=device, tenant=None, actor=user)
    return totp_enrolment(device)


def totp_confirm(*, user, code: str, device_id=None, via: str = "api") -> list[str]:
    """Turns 2FA on with the first code of the enrolling device; returns the recovery codes (shown once).

    ``device_id`` binds the confirmation to the enrolment the caller started (the admin's set-up page
    keeps it in its session): a code for any other device of the user is refused. A wrong code counts
    against the device's throttle (django-otp), kept although the call fails."""
    with transaction.atomic():
        devices = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False)
        if device_id is not None:
            devices = devices.filter(pk=device_id)
        device = devices.first()
        if device is None:
            if has_2fa(user):
                raise Conflict("Two-factor authentication is already on.", code="mfa_already_enabled")
            raise Conflict("Start the enrolment first (POST /security/me/2fa/totp/).", code="mfa_not_enrolling")
        code = str(code).strip().replace(" ", "")
        allowed, _extra = device.verify_is_allowed()
        # verify_token records the step it accepted (last_t): the same code never works twice.
        good = allowed and code.isdigit() and len(code) == 6 and device.verify_token(code)
        if good:
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            codes = _replace_recovery_codes(user)
            audit.record(action="security.mfa_enable", obj=device, tenant=None, actor=user)
            record_event(EventType.MFA_ENABLED, user=user, reason=via)
            return codes
    if not allowed:
        raise InvalidInput("Too many wrong codes: wait a moment, then try again.", field="code", code="throttled")
    raise InvalidInput("The code does not match; check your authenticator app's clock.", field="code")


def mfa_disable(*, user, code: str | None = None, password: str | None = None) -> None:
    if not has_2fa(user):
        raise Conflict("Two-factor authentication is not on.", code="mfa_not_enabled")
    # Checked before the transaction: a wrong code's throttling (django-otp) must survive the 400.
    require_reauth(user, code=code, password=password)
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        audit.record(action="security.mfa_disable", obj=user, tenant=None, actor=user)
        record_event(EventType.MFA_DISABLED, user=user)


def recovery_codes_regenerate(*, user, code: str | None = None, password: str | None = None) -> list[str]:
    if not has_2fa(user):
        raise Conflict("Two-factor authentication is not on.", code="mfa_not_enabled")
    require_reauth(user, code=code, password=password)
    with transaction.atomic():
        codes = _replace_recovery_codes(user)
        audit.record(action="security.recovery_codes_regenerate", obj=user, tenant=None, actor=user)
        record_event(EventType.RECOVERY_CODES_REGENERATED, user=user)
    return codes


# --- the login's second step (docs/api.md) -----------------------------------------------------


@LOGIN_CHALLENGES.register()
def login_challenge(user, request) -> dict | None:
    """Called by the login after the password checked out: with 2FA on, no key yet."""
    if not has_2fa(user):
        return None
    challenge = MfaChallenge.objects.create(
        user=user, expires_at=timezone.now() + MFA_TOKEN_MAX_AGE, ip=context.current().ip
    )
    token = signing.dumps({"c": str(challenge.pk)}, salt=_SIGNING_SALT, compress=False)
    return {"mfa_required": True, "mfa_token": token}


def login_complete(*, mfa_token: str, code: str):
    """The user of a good, unused, unexpired challenge and code (and which factor), or InvalidInput."""
    try:
        payload = signing.loads(mfa_token, salt=_SIGNING_SALT, max_age=MFA_TOKEN_MAX_AGE)
        challenge_id = payload["c"]
    except (signing.BadSignature, KeyError, TypeError) as exc:
        raise InvalidInput(INVALID_MFA, code="invalid_mfa") from exc
    with transaction.atomic():
        challenge = MfaChallenge.objects.select_for_update().select_related("user").filter(pk=challenge_id).first()
        if (
            challenge is None
            or challenge.used_at is not None
            or challenge.expires_at <= timezone.now()
            or challenge.failures >= MFA_MAX_FAILURES
            or not challenge.user.is_active
        ):
            raise InvalidInput(INVALID_MFA, code="invalid_mfa")
        method = verify_second_factor(challenge.user, code)
        if method is None:
            challenge.failures += 1
            challenge.save(update_fields=["failures", "updated_at"])
            failure = (challenge.user, challenge.failures)
        else:
            challenge.used_at = timezone.now()
            challenge.save(update_fields=["used_at", "updated_at"])
            failure = None
    if failure is not None:
        # Outside the rolled-back path on purpose: the failed attempt and its event are kept.
        record_event(EventType.LOGIN_FAILURE, user=failure[0], reason="bad_2fa_code", data={"attempt": failure[1]})
        raise InvalidInput(INVALID_MFA, code="invalid_mfa")
    return challenge.user, method


def purge_challenges() -> int:
    n, _ = MfaChallenge.objects.filter(expires_at__lt=timezone.now() - timedelta(days=1)).delete()
    return n
