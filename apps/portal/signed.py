"""Signed, expiring links of the portal (django.core.signing: HMAC with SECRET_KEY and a salt per use).

Links that set a password carry a fingerprint of the current password hash, so each works once: the
password it sets changes the hash, and the link stops matching.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.core import signing
from django.utils.crypto import salted_hmac

INVITATION_MAX_AGE = timedelta(days=7)
RESET_MAX_AGE = timedelta(hours=2)
VERIFY_MAX_AGE = timedelta(days=3)
INVOICE_MAX_AGE = timedelta(days=45)  # past a usual due date and the first reminders

_SALT = "mpanel.portal."


def _fingerprint(user) -> str:
    state = f"{user.pk}:{user.password}:{user.email}:{user.email_verified_at}:{user.is_active}"
    return salted_hmac(_SALT + "fingerprint", state).hexdigest()[:16]


def user_link_token(user, purpose: str) -> str:
    return signing.dumps({"u": str(user.pk), "f": _fingerprint(user)}, salt=_SALT + purpose, compress=True)


def user_from_token(token: str, purpose: str, max_age: timedelta, users) -> object | None:
    """The portal user the token names when it is genuine, not expired and still matches them."""
    try:
        data = signing.loads(token, salt=_SALT + purpose, max_age=max_age)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    user = users.filter(pk=data.get("u")).first() if _is_uuid(data.get("u")) else None
    if user is None or data.get("f") != _fingerprint(user):
        return None
    return user


def invoice_token(invoice) -> str:
    return signing.dumps({"i": str(invoice.pk), "t": str(invoice.tenant_id)}, salt=_SALT + "invoice", compress=True)


def invoice_id_from_token(token: str, tenant) -> str | None:
    try:
        data = signing.loads(token, salt=_SALT + "invoice", max_age=INVOICE_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("t") != str(tenant.pk) or not _is_uuid(data.get("i")):
        return None
    return data["i"]


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
