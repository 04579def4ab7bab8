"""Writing security events (``record_event``) and purging them per the tenants' retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.audit.services import plain
from apps.common import context

from .models import SecurityEvent, SecurityPolicy

_ALL = object()


def record_event(
    type: str,
    *,
    user=None,
    tenant: Any = None,
    reason: str = "",
    data: dict | None = None,
    actor: Any = _ALL,
    email: str = "",
) -> list[SecurityEvent]:
    """Writes the user's own copy (no tenant) and, for an event in a tenant, that tenant's copy.

    ``tenant`` given: an event of what happened in that tenant (a token, its policy, a role), also seen
    by that tenant's admins. Not given: an account event (login, 2FA, password, sessions), the user's
    own only: no tenant sees what its members do elsewhere or outside any tenant.
    """
    ctx = context.current()
    if actor is _ALL:
        actor = ctx.actor
    actor = actor if getattr(actor, "is_authenticated", False) else None
    user_id = getattr(user, "pk", user)
    tenant_ids = [getattr(tenant, "pk", tenant)] if tenant is not None else []
    email = email or getattr(user, "email", "") or ""
    common = dict(
        user_id=user_id,
        email=email[:254],
        actor=actor,
        type=type,
        reason=reason[:64],
        data=plain(data or {}),
        ip=ctx.ip,
        user_agent=ctx.user_agent[:255],
        request_id=ctx.request_id,
        created_at=timezone.now(),
    )
    rows = [SecurityEvent(tenant_id=None, **common)]
    rows += [SecurityEvent(tenant_id=t, **common) for t in tenant_ids]
    return SecurityEvent.objects.bulk_create(rows)


def purge_expired() -> int:
    """Deletes tenant events older than each tenant's retention, and account copies older than
    ``MPANEL_SECURITY_EVENT_RETENTION_DAYS``."""
    now = timezone.now()
    deleted = 0
    for tenant_id, days in SecurityPolicy.all_tenants.values_list("tenant_id", "event_retention_days"):
        n, _ = SecurityEvent.objects.filter(tenant_id=tenant_id, created_at__lt=now - timedelta(days=days)).delete()
        deleted += n
    default_days = settings.MPANEL_SECURITY_EVENT_RETENTION_DAYS
    with_policy = SecurityPolicy.all_tenants.values("tenant_id")
    n, _ = (
        SecurityEvent.objects.filter(created_at__lt=now - timedelta(days=default_days))
        .exclude(tenant_id__in=with_policy)
        .delete()
    )
    return deleted + n
