"""The signing secrets of a tenant's own generic webhook endpoint (``/billing/webhooks/generic/<slug>``).

A secret is made at random, shown once (when it is made) and kept encrypted (``apps.billing.crypto``).
Rotating makes a new one; the one it replaces stays valid for a grace period (default 24 hours, at
most 7 days) so the tenant's payment provider can switch without a dropped delivery. At most two are
valid at any time: a rotation during a grace period ends the older one's grace at once.
"""

from __future__ import annotations

import secrets as random
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import InvalidInput

from .. import crypto
from ..models import WebhookSecret

PREFIX = "mpwh_"
DEFAULT_GRACE_HOURS = 24
MAX_GRACE_HOURS = 24 * 7


def valid(tenant):
    """The tenant's secrets that a delivery may be signed with now (newest first)."""
    now = timezone.now()
    return WebhookSecret.all_tenants.filter(tenant_id=getattr(tenant, "pk", tenant)).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


def valid_secrets(tenant) -> list[str]:
    """The plain secrets to check a signature with; one that cannot be decrypted (SECRET_KEY changed
    without a fallback) is skipped, so deliveries signed with it are refused until a rotation."""
    plain = []
    for row in valid(tenant):
        try:
            plain.append(crypto.decrypt(row.secret_encrypted))
        except crypto.UndecryptableSecret:
            continue
    return plain


@transaction.atomic
def secret_rotate(*, tenant, actor=None, grace_hours: int = DEFAULT_GRACE_HOURS) -> tuple[WebhookSecret, str]:
    """A new secret, answered in plain this once; the current one stays valid ``grace_hours``."""
    if isinstance(grace_hours, bool) or not isinstance(grace_hours, int) or not 0 <= grace_hours <= MAX_GRACE_HOURS:
        raise InvalidInput(f"grace_hours is a whole number from 0 to {MAX_GRACE_HOURS}.", field="grace_hours")
    now = timezone.now()
    # Rotations of one tenant queue here (the rows are locked), so two at once still leave two valid.
    held = list(valid(tenant).select_for_update().order_by("-created_at"))
    for position, row in enumerate(held):
        # The current one gets the grace period; any older one still in its grace ends now.
        ends = now + timedelta(hours=grace_hours) if position == 0 else now
        if row.expires_at is not None:
            ends = min(ends, row.expires_at)
        with audit.change(row, "webhook_secret.expire", actor=actor):
            row.expires_at = ends
            row.save(update_fields=["expires_at", "updated_at"])
    plain = PREFIX + random.token_urlsafe(32)
    row = WebhookSecret.objects.create(
        tenant_id=tenant.pk, secret_encrypted=crypto.encrypt(plain), prefix=plain[: len(PREFIX) + 6]
    )
    audit.created(row, "webhook_secret.rotate", actor=actor)
    return row, plain
