"""What the SSL module adds to other modules: the ``tls`` part of a website's spec (the certificate
its vhost serves, ``apps.websites.services.SPEC_PARTS``), and what a website's deletion does to its
certificates (``apps.websites.services.DELETED``)."""

from __future__ import annotations

from django.utils import timezone

from apps.websites.models import Website
from apps.websites.services import DELETED, SPEC_PARTS

from . import services
from .crypto import unseal
from .models import Certificate, CertificateStatus


def serving_for(site: Website) -> Certificate | None:
    """The website's certificate to serve: valid (or being renewed), not expired, the latest. The spec
    is built in jobs and system code too, where no tenant is in scope: the site names its tenant."""
    return (
        Certificate.all_tenants.filter(
            tenant_id=site.tenant_id,
            website=site,
            status__in=[CertificateStatus.VALID, CertificateStatus.RENEWING],
            not_after__gt=timezone.now(),
        )
        .exclude(certificate_pem="")
        .order_by("-not_after")
        .first()
    )


@SPEC_PARTS.register("tls")
def tls_part(site: Website) -> dict | None:
    cert = serving_for(site)
    if cert is None:
        return None  # the node serves its self-signed certificate
    # Decrypted only into the spec the node receives (over the driver); never stored or logged.
    return {
        "certificate": cert.certificate_pem + cert.chain_pem,
        "private_key": unseal(cert.key_encrypted),
        "hsts": cert.hsts,
    }


@DELETED.register("ssl.revoke_on_delete")
def website_deleted(site: Website, *, actor=None, revoke_certificates: bool | None = None) -> None:
    services.website_deleted(site, actor=actor, revoke_certificates=revoke_certificates)
