"""Every write of the white-label module: the brand (fields and logo) and custom portal domains.

Each is one transaction that records its audit event. A logo's bytes go to the default storage
(``MPANEL_VAR_DIR/media`` on the embedded default, object storage when ``STORAGES`` says so)
before the row that names them; a transaction that fails after the upload removes the new file,
and the file a change replaces is removed only after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from agent.web import self_signed
from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.registry import Registry
from apps.dns import services as dns_services
from apps.websites import validators as host_rules

from . import crypto, validators, verification
from .models import Brand, CertificateKind, CustomDomain, DomainStatus
from .selectors import LOGO_KEEPERS, storage

log = logging.getLogger(__name__)

TEXT_FIELDS = (
    "display_name", "support_email", "sender_email", "support_url", "support_phone", "legal_name", "address_line1",
    "address_line2", "postal_code", "city", "region", "country", "vat_id", "registration_number", "invoice_footer",
    "terms_url",
)  # fmt: skip
FIELDS = (*TEXT_FIELDS, "primary_color", "accent_color", "nameservers")


def brand_of(tenant) -> Brand:
    """The tenant's brand row, or an unsaved one with its defaults (named after the tenant)."""
    return Brand.all_tenants.filter(tenant=tenant).first() or Brand(tenant=tenant, display_name=tenant.name)


def _locked(tenant) -> tuple[Brand, bool]:
    existing = Brand.all_tenants.select_for_update().filter(tenant=tenant).first()
    return (existing, True) if existing else (Brand(tenant=tenant, display_name=tenant.name), False)


@transaction.atomic
def brand_update(*, tenant, data: dict, replace: bool = False, actor=None) -> Brand:
    """Set the brand's fields. ``replace`` (PUT): the fields left out go back to their defaults."""
    brand, existed = _locked(tenant)
    if replace:
        blank = Brand(tenant=tenant, display_name=tenant.name)
        data = {**{field: getattr(blank, field) for field in FIELDS}, **data}
    with audit.change(brand, "whitelabel.brand_update", actor=actor) as change:
        if not existed:
            change.before = {}
        for field, value in data.items():
            if field not in FIELDS:
                raise InvalidInput(f"Unknown field {field!r}.", field=field)
            setattr(brand, field, value)
        brand.display_name = (brand.display_name or "").strip() or tenant.name
        brand.primary_color = validators.primary_color(brand.primary_color)
        brand.accent_color = validators.accent_color(brand.accent_color)
        brand.vat_id = "".join(brand.vat_id.split()).upper()
        brand.nameservers = validators.nameservers(brand.nameservers)
        brand.save()
    return brand


def nameservers_of(brand: Brand) -> list[str]:
    """The name servers the tenant's zones list: the brand's vanity ones, else the platform's."""
    return list(brand.nameservers) or list(settings.MPANEL_DNS_NAMESERVERS)


class NameserversApplied(NamedTuple):
    nameservers: list[str]  # the set written (the brand's, or the platform's when it has none)
    zones: list  # the zones whose apex changed


def nameservers_apply(*, tenant, actor=None) -> NameserversApplied:
    """Write the brand's vanity name servers (or, when it has none, the platform's) into the apex NS
    and SOA primary of the tenant's existing zones, through the normal zone push (one job per zone,
    each audited). Zones whose apex lists name servers the tenant chose itself are left alone. New
    zones get them anyway (``apps.dns.services.NAMESERVERS``). Answers the set written and the zones
    changed (what was applied, not a later read of the brand)."""
    with transaction.atomic():
        brand, _existed = _locked(tenant)
        names = nameservers_of(brand)
        previous = list(brand.nameservers_applied)
    changed = dns_services.zones_set_nameservers(tenant=tenant, nameservers=names, ours=previous, actor=actor)
    with transaction.atomic():
        brand, existed = _locked(tenant)
        if existed and brand.nameservers_applied != list(brand.nameservers):
            with audit.change(brand, "whitelabel.nameservers_apply", actor=actor):
                brand.nameservers_applied = list(brand.nameservers)
                brand.save(update_fields=["nameservers_applied", "updated_at"])
    return NameserversApplied(list(names), changed)


def logo_upload(*, tenant, content: bytes, actor=None) -> Brand:
    """Validate and store a new logo (400, nothing stored, when it is refused)."""
    logo = validators.logo(content)
    name = f"whitelabel/{tenant.pk}/logo-{logo.sha256[:16]}.{logo.extension}"
    store = storage()
    # The same bytes are stored once: a file that is already there (this logo again) is reused, and
    # then it is never removed on failure, since a row may name it.
    created = not store.exists(name)
    stored = store.save(name, ContentFile(logo.content)) if created else name
    try:
        with transaction.atomic():
            brand, existed = _locked(tenant)
            old = brand.logo
            with audit.change(brand, "whitelabel.logo_upload", actor=actor) as change:
                if not existed:
                    change.before = {}
                brand.logo = stored
                brand.logo_content_type = logo.content_type
                brand.logo_sha256 = logo.sha256
                brand.logo_size = len(logo.content)
                brand.logo_width, brand.logo_height = logo.width, logo.height
                brand.save()
            if old and old != stored:
                transaction.on_commit(lambda: _remove(old))
    except BaseException:
        if created:
            _remove(stored)
        raise
    return brand


@transaction.atomic
def logo_delete(*, tenant, actor=None) -> Brand:
    brand, existed = _locked(tenant)
    if not existed or not brand.logo:
        raise Conflict("The brand has no logo.", code="no_logo")
    old = brand.logo
    with audit.change(brand, "whitelabel.logo_delete", actor=actor):
        brand.logo = brand.logo_content_type = brand.logo_sha256 = ""
        brand.logo_size = 0
        brand.logo_width = brand.logo_height = None
        brand.save()
    transaction.on_commit(lambda: _remove(old))
    return brand


def _remove(name: str) -> None:
    if any(keeps(name) for keeps in LOGO_KEEPERS):
        return  # an issued invoice's seller snapshot still shows it (EU invoices are never re-rendered)
    try:
        storage().delete(name)
    except OSError:  # a file left behind costs bytes, never correctness
        log.warning("could not remove the replaced logo %s", name)


# --- custom portal domains ----------------------------------------------------------------------


def _hostname(value) -> str:
    name = host_rules.hostname(value, field="hostname", allow_wildcard=False)
    if name.startswith("_"):
        raise InvalidInput("A portal domain is a host name.", field="hostname")
    return name


@transaction.atomic
def domain_add(*, tenant, hostname, actor=None) -> CustomDomain:
    name = _hostname(hostname)
    if CustomDomain.all_tenants.filter(tenant=tenant, hostname=name).exists():
        raise Conflict(f"{name} is already one of your portal domains.", code="duplicate", field="hostname")
    if CustomDomain.all_tenants.filter(hostname=name, status=DomainStatus.VERIFIED).exists():
        raise Conflict(f"{name} is already in use.", code="in_use", field="hostname")
    domain = CustomDomain(tenant=tenant, hostname=name)
    try:
        with transaction.atomic():
            domain.save()
    except IntegrityError as exc:  # a concurrent add of the same name
        raise Conflict(f"{name} is already one of your portal domains.", code="duplicate", field="hostname") from exc
    audit.created(domain, "whitelabel.domain_add", actor=actor)
    return domain


def domain_verify(*, domain: CustomDomain, actor=None) -> CustomDomain:
    """Look up ``_mpanel-verify.<host>`` (outside any transaction: DNS may take seconds), then
    record the answer. The record must hold ``mpanel-verify=<token>``; an answer from a zone this
    platform serves for another tenant proves nothing and is not taken."""
    values = verification.txt_values(domain.record_name)
    found = domain.record_value in values and not verification.answered_by_another_tenant(
        record_name=domain.record_name, hostname=domain.hostname, tenant_id=domain.tenant_id
    )
    try:
        locked = _record_check(domain, found=found, values=values, actor=actor)
    except IntegrityError as exc:  # another tenant's proof of the same name committed first
        raise Conflict(f"{domain.hostname} is already in use.", code="in_use") from exc
    if locked.status != DomainStatus.VERIFIED:
        raise Conflict(locked.last_error, code="verification_failed")
    return locked


def _record_check(domain: CustomDomain, *, found: bool, values: list[str], actor) -> CustomDomain:
    with transaction.atomic():
        locked = CustomDomain.all_tenants.select_for_update().get(pk=domain.pk)
        with audit.change(locked, "whitelabel.domain_verify", actor=actor) as change:
            locked.last_checked_at = timezone.now()
            if locked.status == DomainStatus.VERIFIED:
                change.skip()
            elif not found:
                locked.last_error = (
                    f"No TXT record {locked.record_value!r} at {locked.record_name} yet."
                    if not values
                    else f"The TXT records at {locked.record_name} do not hold {locked.record_value!r}."
                )[:300]
                change.skip()
            else:
                if CustomDomain.all_tenants.filter(hostname=locked.hostname, status=DomainStatus.VERIFIED).exists():
                    raise Conflict(f"{locked.hostname} is already in use.", code="in_use")
                locked.status = DomainStatus.VERIFIED
                locked.verified_at = locked.last_checked_at
                locked.last_error = ""
                _self_signed(locked)  # served while the trusted one is issued, and if that fails
                _request_certificate(locked, actor)
            locked.save()
    return locked


def _self_signed(domain: CustomDomain) -> None:
    """A self-signed certificate for the name: served while the trusted one is issued, and kept when
    issuance fails or is off; the API says so."""
    cert_pem, key_pem = self_signed([domain.hostname], days=365)
    cert = x509.load_pem_x509_certificate(cert_pem)
    domain.certificate_kind = CertificateKind.SELF_SIGNED
    domain.certificate_pem = cert_pem.decode()
    domain.certificate_key_encrypted = crypto.encrypt(key_pem.decode())
    domain.certificate_not_after = cert.not_valid_after_utc
    domain.certificate_sha256 = cert.fingerprint(hashes.SHA256()).hex(":")


# The trusted certificate of a verified domain comes from the SSL module, which sits beside this one
# and reaches back to it through other apps: the module above both links them (apps/portal/domain_tls.py).
# VERIFIED: callables(domain, actor) in the verification's transaction, the domain locked, answering the
# ``Certificate`` asked for (or None); REMOVED: callables(domain, actor) in the delete's transaction.
VERIFIED: Registry[Callable] = Registry("custom domain verified hook")
REMOVED: Registry[Callable] = Registry("custom domain removed hook")


def _request_certificate(domain: CustomDomain, actor) -> None:
    if not settings.MPANEL_SSL_AUTO_ISSUE:  # a deployment without a CA keeps the self-signed one
        return
    for hook in VERIFIED:
        cert = hook(domain, actor)
        if cert is not None:
            domain.certificate = cert


@transaction.atomic
def domain_certificate_set(*, domain: CustomDomain, certificate_pem: str, key_pem: str, not_after,
                           sha256_hex: str) -> None:  # fmt: skip
    """The SSL module issued (or renewed) the domain's trusted certificate: it is what the host serves
    from now on (``selectors.portal_tls``), replacing the self-signed fallback. Audited as the system's."""
    locked = CustomDomain.all_tenants.select_for_update().get(pk=domain.pk)
    with audit.change(locked, "whitelabel.domain_certificate", actor=audit.SYSTEM, tenant=locked.tenant):
        locked.certificate_kind = CertificateKind.ACME
        locked.certificate_pem = certificate_pem
        locked.certificate_key_encrypted = crypto.encrypt(key_pem)
        locked.certificate_not_after = not_after
        fp = sha256_hex.lower().replace(":", "")
        locked.certificate_sha256 = ":".join(fp[i : i + 2] for i in range(0, len(fp), 2))
        locked.save()


@transaction.atomic
def domain_certificate_retry(*, domain: CustomDomain, actor=None) -> CustomDomain:
    """Ask again for a verified domain's trusted certificate (issuance failed, or the domain was
    verified while issuance was off); 409 while one is issuing or serving."""
    locked = CustomDomain.all_tenants.select_for_update(of=("self",)).select_related("certificate").get(pk=domain.pk)
    if locked.status != DomainStatus.VERIFIED:
        raise Conflict("Verify the domain first.", code="not_verified")
    current = locked.certificate
    if current is not None and current.status not in ("failed", "revoked", "deleted", "expired"):
        raise Conflict(f"Its certificate is {current.status}.", code="certificate_in_progress")
    with audit.change(locked, "whitelabel.domain_certificate_retry", actor=actor):
        _request_certificate(locked, actor)
        locked.save()
    return locked


@transaction.atomic
def domain_delete(*, domain: CustomDomain, actor=None) -> None:
    """Remove the domain; its trusted certificate goes with it (``REMOVED``: the SSL module deletes it)."""
    for hook in REMOVED:
        hook(domain, actor)
    audit.deleted(domain, "whitelabel.domain_delete", actor=actor)
    domain.delete()
