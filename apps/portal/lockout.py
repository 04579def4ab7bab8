"""Login lockout for the portal: the staff rule (django-axes' settings), counted per tenant account and
per address in the shared cache.

django-axes counts failures of Django's ``authenticate()`` for staff ``User`` rows; portal users are
another realm with their own login, so the portal counts alike with the same limit and cool-off
(``AXES_FAILURE_LIMIT``, ``AXES_COOLOFF_TIME``), and a success resets the account's count as
``AXES_RESET_ON_SUCCESS`` does for staff.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache


def _keys(tenant, email: str, ip: str | None) -> list[str]:
    account = hashlib.sha256(f"{tenant.pk}:{email.strip().lower()}".encode()).hexdigest()[:32]
    keys = [f"portal-lockout:account:{account}"]
    if ip:
        keys.append(f"portal-lockout:ip:{ip}")
    return keys


def cooloff_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def is_locked(tenant, email: str, ip: str | None) -> bool:
    limit = settings.AXES_FAILURE_LIMIT
    return any((cache.get(key) or 0) >= limit for key in _keys(tenant, email, ip))


def failed(tenant, email: str, ip: str | None) -> None:
    for key in _keys(tenant, email, ip):
        if cache.add(key, 1, timeout=cooloff_seconds()):
            continue
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=cooloff_seconds())


def succeeded(tenant, email: str) -> None:
    cache.delete(_keys(tenant, email, None)[0])
