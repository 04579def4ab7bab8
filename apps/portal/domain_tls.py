"""Trusted certificates for custom portal domains: the white-label module proves the name, the SSL
module issues the certificate (ACME, HTTP-01 answered by the panel itself, renewed by its sweep).

The two apps sit side by side and cannot import each other without a cycle, so the link is here,
above both, through their extension points:
- ``whitelabel.services.VERIFIED``: a newly verified domain asks SSL for a certificate of its name
  (``certificate_issue_panel_served``), linked to the domain; the self-signed one serves meanwhile;
- ``ssl.services.PANEL_SERVED``: SSL lets the panel answer HTTP-01 for a certificate a verified
  domain asked for (nothing else), and ``acme_challenge`` below is that answer on the custom host;
- ``ssl.services.ISSUED``: each issuance and renewal becomes what the domain serves
  (``whitelabel.services.domain_certificate_set``);
- ``whitelabel.services.REMOVED``: removing the domain deletes its certificate (SSL's delete job).
"""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET

from apps.accounts.models import User
from apps.ssl import services as ssl_services
from apps.ssl.crypto import unseal
from apps.ssl.models import Certificate, CertificateStatus
from apps.ssl.selectors import panel_challenge
from apps.whitelabel import services as whitelabel_services
from apps.whitelabel.models import CustomDomain, DomainStatus


def _staff(actor) -> User | None:
    """A job's ``created_by`` is a staff user: any other actor (the system, nobody) asks as the system."""
    return actor if isinstance(actor, User) else None


@whitelabel_services.VERIFIED.register("ssl.certificate")
def request_certificate(domain: CustomDomain, actor) -> Certificate:
    return ssl_services.certificate_issue_panel_served(
        tenant=domain.tenant, names=[domain.hostname], actor=_staff(actor)
    )


@whitelabel_services.REMOVED.register("ssl.certificate")
def release_certificate(domain: CustomDomain, actor) -> None:
    cert = domain.certificate
    if cert is not None and cert.status != CertificateStatus.DELETED:
        ssl_services.certificate_delete(certificate=cert, actor=_staff(actor))


@ssl_services.PANEL_SERVED.register("whitelabel.custom_domain")
def served_by_the_panel(cert: Certificate) -> bool:
    return CustomDomain.all_tenants.filter(certificate=cert, status=DomainStatus.VERIFIED).exists()


@ssl_services.ISSUED.register("whitelabel.custom_domain")
def certificate_issued(cert: Certificate) -> None:
    """In the transaction that makes ``cert`` the one served: each domain linked to it serves it too."""
    domains = list(CustomDomain.all_tenants.filter(certificate=cert, status=DomainStatus.VERIFIED))
    if not domains:
        return
    key_pem = unseal(cert.key_encrypted)  # into this call only: the domain seals it under its own label
    for domain in domains:
        whitelabel_services.domain_certificate_set(
            domain=domain, certificate_pem=cert.certificate_pem + cert.chain_pem, key_pem=key_pem,
            not_after=cert.not_after, sha256_hex=cert.fingerprint,
        )  # fmt: skip


@require_GET
def acme_challenge(request, token: str):
    """``/.well-known/acme-challenge/<token>`` on a verified custom portal domain (``host_urls``): the
    HTTP-01 answer of the certificate the SSL module is issuing for that host, over plain HTTP (the
    CA asks before any certificate). Any other host or token is a 404."""
    host = getattr(request, "portal_domain", None) or ""
    answer = panel_challenge(host, token) if host else None
    if answer is None:
        raise Http404("Not found.")
    response = HttpResponse(answer, content_type="text/plain")
    response["Cache-Control"] = "no-store"
    return response
