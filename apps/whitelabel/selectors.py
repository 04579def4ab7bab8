"""Named reads of the brand: ``brand_for(tenant)``, what every customer-facing page, e-mail and PDF
shows; ``tenant_for_host(host)``, the tenant whose portal a verified custom domain serves.

Both are cached (``WHITELABEL_CACHE_SECONDS``, default 300) and dropped after the commit of any
change to a brand, a tenant or a custom domain (signals, so the admin, the services and a shell
all count).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import storages
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.urls import reverse
from django.utils import timezone

from apps.common.registry import Registry
from apps.dns import services as dns_services
from apps.tenancy.models import Tenant

from . import crypto, validators
from .models import DEFAULT_ACCENT, DEFAULT_PRIMARY, Brand, CustomDomain, DomainStatus

log = logging.getLogger(__name__)

BRAND_KEY = "whitelabel:brand:v1:{}"
HOST_KEY = "whitelabel:host:v1:{}"
_NO_TENANT = ""  # cached for hosts that map to nobody, so unknown hosts cost no query either


def ttl() -> int:
    return int(getattr(settings, "WHITELABEL_CACHE_SECONDS", 300))


def storage():
    return storages["default"]


@dataclass(frozen=True)
class BrandView:
    """What a customer sees of a tenant. Plain values, so it caches and renders anywhere."""

    tenant_id: str
    display_name: str
    primary_color: str = DEFAULT_PRIMARY
    accent_color: str = DEFAULT_ACCENT
    logo: str = ""
    logo_content_type: str = ""
    logo_sha256: str = ""
    logo_url: str = ""
    logo_width: int | None = None
    logo_height: int | None = None
    support_email: str = ""
    sender_email: str = ""
    support_url: str = ""
    support_phone: str = ""
    legal_name: str = ""
    address_lines: tuple[str, ...] = ()
    country: str = ""
    country_name: str = ""
    vat_id: str = ""
    registration_number: str = ""
    invoice_footer: str = ""
    terms_url: str = ""

    @property
    def name(self) -> str:
        """The portal's templates say ``brand.name``."""
        return self.display_name

    @property
    def logo_path(self) -> str:
        """The logo's URL relative to the current host (a custom portal domain serves ``/brand/`` too)."""
        if not self.logo_url:
            return ""
        parts = urlsplit(self.logo_url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @property
    def seller_name(self) -> str:
        return self.legal_name or self.display_name

    @property
    def on_primary(self) -> str:
        return validators.text_on(self.primary_color)

    @property
    def on_accent(self) -> str:
        return validators.text_on(self.accent_color)

    def logo_data_uri(self) -> str:
        """The logo inlined (PDFs render offline); empty when there is none or it cannot be read."""
        if not self.logo:
            return ""
        try:
            with storage().open(self.logo, "rb") as handle:
                content = handle.read()
        except OSError:
            log.warning("the logo %s of tenant %s cannot be read", self.logo, self.tenant_id)
            return ""
        return f"data:{self.logo_content_type};base64,{base64.b64encode(content).decode()}"

    def public(self) -> dict:
        """The brand as the public catalog and the portal API answer it."""
        return {
            "display_name": self.display_name,
            "logo_url": self.logo_url or None,
            "primary_color": self.primary_color,
            "accent_color": self.accent_color,
            "support_email": self.support_email,
            "support_url": self.support_url,
            "support_phone": self.support_phone,
            "terms_url": self.terms_url,
        }


def logo_path(brand: Brand) -> str:
    """The logo's public path, versioned by its hash so that caches never show an old one."""
    return reverse("whitelabel-logo", kwargs={"brand_id": brand.pk, "extension": brand.logo.rsplit(".", 1)[-1]}) + (
        f"?v={brand.logo_sha256[:12]}"
    )


def view_of(brand: Brand | None, tenant: Tenant) -> BrandView:
    if brand is None:
        return BrandView(tenant_id=str(tenant.pk), display_name=tenant.name)
    address = [brand.address_line1, brand.address_line2, " ".join(p for p in (brand.postal_code, brand.city) if p),
               brand.region, brand.country.name if brand.country else ""]  # fmt: skip
    return BrandView(
        tenant_id=str(tenant.pk),
        display_name=brand.display_name or tenant.name,
        primary_color=brand.primary_color,
        accent_color=brand.accent_color,
        logo=brand.logo,
        logo_content_type=brand.logo_content_type,
        logo_sha256=brand.logo_sha256,
        # Absolute (e-mails show it): under the tenant's custom portal domain when it has a verified one.
        logo_url=public_base(tenant) + logo_path(brand) if brand.logo else "",
        logo_width=brand.logo_width,
        logo_height=brand.logo_height,
        support_email=brand.support_email,
        sender_email=brand.sender_email,
        support_url=brand.support_url,
        support_phone=brand.support_phone,
        legal_name=brand.legal_name,
        address_lines=tuple(line for line in address if line),
        country=str(brand.country or ""),
        country_name=brand.country.name if brand.country else "",
        vat_id=brand.vat_id,
        registration_number=brand.registration_number,
        invoice_footer=brand.invoice_footer,
        terms_url=brand.terms_url,
    )


def brand_for(tenant: Tenant | str) -> BrandView:
    """The tenant's brand (a ``Tenant`` or its id), or its name alone when it set none. Cached."""
    tenant_id = getattr(tenant, "pk", tenant)
    key = BRAND_KEY.format(tenant_id)
    cached = cache.get(key)
    if isinstance(cached, dict):
        try:
            return BrandView(**{**cached, "address_lines": tuple(cached.get("address_lines", ()))})
        except TypeError:
            pass  # an entry written by another version of this class
    if not isinstance(tenant, Tenant):
        tenant = Tenant.objects.get(pk=tenant_id)
    brand = Brand.all_tenants.filter(tenant_id=tenant.pk).first()
    view = view_of(brand, tenant)
    cache.set(key, asdict(view), timeout=ttl())
    return view


# What an issued invoice or credit note keeps of its seller (EU VAT directive 2006/112/EC art. 226: the
# details stand as they were on the day it was issued, whatever the brand says later).
SELLER_FIELDS = (
    "display_name", "legal_name", "address_lines", "country", "country_name", "vat_id", "registration_number",
    "invoice_footer", "terms_url", "support_email", "support_phone", "support_url", "primary_color", "accent_color",
    "logo", "logo_content_type", "logo_sha256",
)  # fmt: skip
SELLER_VERSION = 1

# Callables ``storage name -> bool``: True when something still shows that logo file (billing: an issued
# document's seller snapshot), so a replaced or deleted logo is kept rather than removed.
LOGO_KEEPERS: Registry[Callable[[str], bool]] = Registry("logo keeper")


def seller_snapshot(tenant: Tenant | str) -> dict:
    """The seller's details as they stand now, read from the database (not the cache: the moment of
    issue must see a change committed just before), as plain JSON for ``Invoice.seller_details``."""
    if not isinstance(tenant, Tenant):
        tenant = Tenant.objects.get(pk=tenant)
    view = view_of(Brand.all_tenants.filter(tenant_id=tenant.pk).first(), tenant)
    values = asdict(view)
    snapshot = {field: values[field] for field in SELLER_FIELDS}
    snapshot["address_lines"] = list(snapshot["address_lines"])
    return {"version": SELLER_VERSION, "taken_at": timezone.now().isoformat(), **snapshot}


def seller_from_snapshot(tenant_id, snapshot: dict) -> BrandView:
    """A ``BrandView`` of the seller as frozen on a document (fields a later version added: defaults)."""
    known = {field: snapshot[field] for field in SELLER_FIELDS if field in snapshot}
    known["address_lines"] = tuple(known.get("address_lines") or ())
    return BrandView(tenant_id=str(tenant_id), **known)


@dns_services.NAMESERVERS.register("whitelabel")
def vanity_nameservers(tenant) -> list[str]:
    """The brand's name servers for the tenant's new zones (none: the platform's)."""
    return list(
        Brand.all_tenants.filter(tenant_id=getattr(tenant, "pk", tenant)).values_list("nameservers", flat=True).first()
        or []
    )


def normal_host(raw: str) -> str:
    """``Host`` as sent (``My.Brand.com.:443``) to the name it stands for (``my.brand.com``)."""
    host = (raw or "").strip().lower()
    if host.startswith("["):
        return ""  # an IP literal: never a portal domain
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


_CLAIMED = "-"  # a name some tenant added (pending, or its tenant not active): known, served by nobody


def _host_entry(name: str) -> str:
    """The cached answer for a normalised host: a tenant id, ``_CLAIMED`` or ``_NO_TENANT``."""
    key = HOST_KEY.format(name)
    entry = cache.get(key)
    if entry is None:
        rows = list(CustomDomain.all_tenants.filter(hostname=name).values_list("tenant_id", "status"))
        verified = [tenant_id for tenant_id, status in rows if status == DomainStatus.VERIFIED]
        entry = str(verified[0]) if verified else (_CLAIMED if rows else _NO_TENANT)
        cache.set(key, entry, timeout=ttl())
    return entry


def host_is_claimed(host: str) -> bool:
    """``host`` is a custom domain some tenant added, verified or not: never the panel's own."""
    name = normal_host(host)
    if not name or len(name) > 253 or "." not in name or _is_ip(name):
        return False
    return _host_entry(name) != _NO_TENANT


def tenant_for_host(host: str) -> Tenant | None:
    """The active tenant whose VERIFIED custom domain ``host`` is; ``None`` for any other host."""
    name = normal_host(host)
    if not name or len(name) > 253 or "." not in name or _is_ip(name):
        return None  # "localhost", "testserver", addresses: never a portal domain, and no cache read
    tenant_id = _host_entry(name)
    if tenant_id in (_NO_TENANT, _CLAIMED):
        return None
    return Tenant.objects.filter(pk=tenant_id, status=Tenant.Status.ACTIVE).first()


def verified_domain_of(tenant: Tenant) -> str:
    """The first verified custom domain of ``tenant`` ("" when none): where its portal links point."""
    return (
        CustomDomain.all_tenants.filter(tenant=tenant, status=DomainStatus.VERIFIED)
        .order_by("verified_at")
        .values_list("hostname", flat=True)
        .first()
        or ""
    )


def public_base(tenant: Tenant) -> str:
    """``https://my.brand.com`` for a tenant with a verified custom domain, else ``MPANEL_FRONTEND_URL``."""
    domain = verified_domain_of(tenant)
    if domain:
        return f"{urlsplit(settings.MPANEL_FRONTEND_URL).scheme or 'https'}://{domain}"
    return settings.MPANEL_FRONTEND_URL.rstrip("/")


def portal_base_url(tenant: Tenant) -> str:
    """Where the tenant's portal lives, without a trailing slash: ``https://my.brand.com`` when it has a
    verified custom domain (the scheme of ``MPANEL_FRONTEND_URL``), else the panel's
    ``…/portal/<slug>``. A portal path (``/invoices/<id>/``) appended to it is a link a customer can
    follow; e-mails and Stripe's return URLs are made this way, so a white-labelled tenant's customers
    never see the panel's address."""
    if verified_domain_of(tenant):
        return public_base(tenant)
    # Reversed in the panel's own URLconf, whatever host the current request came in on.
    index = reverse("portal:index", kwargs={"tenant_slug": tenant.slug}, urlconf=settings.ROOT_URLCONF)
    return settings.MPANEL_FRONTEND_URL.rstrip("/") + index.rstrip("/")


def portal_url(tenant: Tenant, name: str, **kwargs) -> str:
    """The absolute URL of the portal page ``portal:<name>`` of ``tenant`` (see ``portal_base_url``)."""
    path = reverse(f"portal:{name}", kwargs={"tenant_slug": tenant.slug, **kwargs}, urlconf=settings.ROOT_URLCONF)
    index = reverse("portal:index", kwargs={"tenant_slug": tenant.slug}, urlconf=settings.ROOT_URLCONF)
    return portal_base_url(tenant) + "/" + path[len(index) :]


# --- invalidation ---------------------------------------------------------------------------------


def forget_brand(tenant_id) -> None:
    transaction.on_commit(lambda: cache.delete(BRAND_KEY.format(tenant_id)))


def forget_host(hostname: str) -> None:
    transaction.on_commit(lambda: cache.delete(HOST_KEY.format(hostname)))


def _on_brand(sender, instance, **kwargs):
    forget_brand(instance.tenant_id)


def _on_tenant(sender, instance, **kwargs):
    forget_brand(instance.pk)


def _on_domain(sender, instance, **kwargs):
    forget_host(instance.hostname)
    forget_brand(instance.tenant_id)  # its logo's URL is under the verified domain


def connect_signals() -> None:
    post_save.connect(_on_brand, sender=Brand, dispatch_uid="whitelabel-brand-save")
    post_delete.connect(_on_brand, sender=Brand, dispatch_uid="whitelabel-brand-delete")
    post_save.connect(_on_tenant, sender=Tenant, dispatch_uid="whitelabel-tenant-save")
    post_delete.connect(_on_tenant, sender=Tenant, dispatch_uid="whitelabel-tenant-delete")
    post_save.connect(_on_domain, sender=CustomDomain, dispatch_uid="whitelabel-domain-save")
    post_delete.connect(_on_domain, sender=CustomDomain, dispatch_uid="whitelabel-domain-delete")


def portal_tls(hostname: str) -> tuple[str, str] | None:
    """What TLS serves for a verified custom portal domain: (full chain PEM, private key PEM), the
    trusted ACME certificate once the SSL module issued it (``services.certificate_issued``), the
    self-signed one until then or when issuance failed. None for a name that serves nobody. This is
    the one read a TLS terminator in front of the panel uses (the key leaves the row only here)."""
    domain = (
        CustomDomain.all_tenants.filter(hostname=normal_host(hostname), status=DomainStatus.VERIFIED)
        .exclude(certificate_pem="")
        .first()
    )
    if domain is None or not domain.certificate_key_encrypted:
        return None
    return domain.certificate_pem, crypto.decrypt(domain.certificate_key_encrypted)
