"""Named reads of the SSL module (the admin's and the dashboard's)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from .models import Certificate, CertificateStatus


def expiring_soon(*, days: int | None = None) -> QuerySet[Certificate]:
    """Every tenant's certificates that serve and expire within ``days`` (default the alert's 14):
    the operators' to-do (the dashboard's card), across tenants."""
    horizon = timezone.now() + timedelta(days=days if days is not None else settings.MPANEL_SSL_ALERT_DAYS)
    return Certificate.all_tenants.filter(
        status__in=[CertificateStatus.VALID, CertificateStatus.RENEWING, CertificateStatus.EXPIRED],
        not_after__lte=horizon,
    ).order_by("not_after")
