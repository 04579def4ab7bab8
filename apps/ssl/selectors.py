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


def panel_challenge(host: str, token: str) -> str | None:
    """The HTTP-01 answer for ``token`` at ``host`` when the panel answers it itself (a certificate
    without a website under way, ``services.PANEL_SERVED``): None for any other host or token."""
    cert = (
        Certificate.all_tenants.filter(
            status__in=[CertificateStatus.ISSUING, CertificateStatus.RENEWING, CertificateStatus.PENDING],
            website__isnull=True,
            names__contains=[host],
            challenges__contains=[{"kind": "panel", "token": token}],
        )
        .only("challenges")
        .first()
    )
    if cert is None:
        return None
    return next((e["answer"] for e in cert.challenges if e.get("kind") == "panel" and e.get("token") == token), None)
