"""Domain writes: registration bookkeeping through the registrar driver, ownership verification,
renewal (with an invoice line when the domain has a customer and a renewal price), expiry."""

from __future__ import annotations

from datetime import date

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.dns import zonedata

from . import registrars, verification
from .models import Domain, DomainStatus

FIELDS = ["name", "customer", "status", "registrar", "registered_at", "expires_at", "auto_renew", "nameservers",
          "renewal_price", "verified_at"]  # fmt: skip
GONE = (DomainStatus.TRANSFERRED_OUT,)


def _actor(actor) -> dict:
    return {"actor": actor} if actor is not None else {}


def domain_name(value: str) -> str:
    try:
        return zonedata.zone_name(value)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="name") from exc


def _nameservers(values) -> list[str]:
    out = []
    for value in values or []:
        try:
            out.append(zonedata.zone_name(value))
        except InvalidInput as exc:
            raise InvalidInput(f"{value}: {exc.message}", field="nameservers") from exc
    if len(set(out)) != len(out):
        raise InvalidInput("Nameservers must differ.", field="nameservers")
    return out


def _locked(domain: Domain) -> Domain:
    return Domain.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=domain.pk)


def _apply(domain: Domain, state: registrars.RegistrarState) -> None:
    domain.expires_at = state.expires_at
    domain.nameservers = list(state.nameservers)
    if state.registered_at is not None:
        domain.registered_at = state.registered_at


@transaction.atomic
def domain_create(
    *,
    tenant,
    name: str,
    customer=None,
    registrar: str = "manual",
    years: int = 1,
    registered_at: date | None = None,
    expires_at: date | None = None,
    auto_renew: bool = True,
    nameservers: list[str] | None = None,
    renewal_price=None,
    actor=None,
) -> Domain:
    driver = registrars.get(registrar)
    domain = Domain(tenant=tenant, name=domain_name(name), customer=customer, registrar=registrar,
                    registered_at=registered_at, auto_renew=auto_renew, renewal_price=renewal_price)  # fmt: skip
    _apply(domain, driver.register(domain, years=years, nameservers=_nameservers(nameservers), expires_at=expires_at))
    try:
        with transaction.atomic():
            domain.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("This tenant has this domain already.", field="name") from exc
    audit.record(action="domain.create", obj=domain, after=audit.snapshot(domain, FIELDS), **_actor(actor))
    return domain


@transaction.atomic
def domain_update(*, domain: Domain, data: dict, actor=None) -> Domain:
    domain = _locked(domain)
    if domain.status in GONE:
        raise Conflict("This domain was transferred out.")
    before = audit.snapshot(domain, FIELDS)
    for key in ("customer", "auto_renew", "renewal_price"):
        if key in data:
            setattr(domain, key, data[key])
    if "customer" in data and data["customer"] != before["customer"] and domain.verified_at is not None:
        # Proof of ownership belongs to whoever proved it: a new customer proves it again.
        domain.verified_at = None
        domain.status = DomainStatus.PENDING_VERIFICATION if domain.status == DomainStatus.ACTIVE else domain.status
    if "expires_at" in data:
        if domain.registrar != "manual":
            raise InvalidInput("Only the manual registrar takes an expiry by hand.", field="expires_at")
        domain.expires_at = data["expires_at"]
    if "nameservers" in data:
        state = registrars.get(domain.registrar).set_nameservers(domain, nameservers=_nameservers(data["nameservers"]))
        _apply(domain, state)
    domain.save()
    audit.record(action="domain.update", obj=domain, before=before, after=audit.snapshot(domain, FIELDS),
                 **_actor(actor))  # fmt: skip
    return domain


@transaction.atomic
def domain_delete(*, domain: Domain, actor=None) -> None:
    domain = _locked(domain)
    audit.record(action="domain.delete", obj=domain, before=audit.snapshot(domain, FIELDS), **_actor(actor))
    domain.delete()


def domain_verify(*, domain: Domain, actor=None) -> Domain:
    """Look the challenge up (outside any transaction: DNS can be slow), then record the outcome."""
    if domain.status in GONE:
        raise Conflict("This domain was transferred out.")
    found = verification.txt_values(domain.challenge_name)
    with transaction.atomic():
        domain = _locked(domain)
        if domain.challenge_value not in found:
            audit.record(action="domain.verify_failed", obj=domain, after={"found": found[:10]}, **_actor(actor))
            raise Conflict(
                f"No TXT record {domain.challenge_name} with {domain.challenge_value!r} was found "
                f"(found: {found[:5] or 'nothing'}).",
                code="verification_failed",
            )
        before = audit.snapshot(domain, FIELDS)
        domain.verified_at = timezone.now()
        if domain.status == DomainStatus.PENDING_VERIFICATION:
            domain.status = DomainStatus.ACTIVE
        domain.save()
        audit.record(action="domain.verify", obj=domain, before=before, after=audit.snapshot(domain, FIELDS),
                     **_actor(actor))  # fmt: skip
    return domain


@transaction.atomic
def domain_renew(*, domain: Domain, years: int = 1, actor=None, today: date | None = None) -> Domain:
    """Extend through the registrar; with a customer and a renewal price, a draft invoice bills it."""
    from apps.billing.services.invoices import invoice_create

    domain = _locked(domain)
    if domain.status in GONE:
        raise Conflict("This domain was transferred out.")
    today = today or timezone.localdate()
    before = audit.snapshot(domain, FIELDS)
    _apply(domain, registrars.get(domain.registrar).renew(domain, years=years, today=today))
    if domain.status == DomainStatus.EXPIRED:
        domain.status = DomainStatus.ACTIVE if domain.verified_at else DomainStatus.PENDING_VERIFICATION
    domain.save()
    invoice = None
    if domain.customer_id and domain.renewal_price is not None:
        line = {"description": f"Domain renewal {domain.unicode_name} ({years} year{'s' if years > 1 else ''}, "
                               f"until {domain.expires_at.isoformat()})",
                "quantity": years, "unit_price": str(domain.renewal_price)}  # fmt: skip
        invoice = invoice_create(tenant=domain.tenant, customer=domain.customer, lines=[line])
    audit.record(action="domain.renew", obj=domain, before=before,
                 after={**audit.snapshot(domain, FIELDS), "invoice": str(invoice.pk) if invoice else None},
                 **_actor(actor))  # fmt: skip
    domain.renewal_invoice = invoice
    return domain


@transaction.atomic
def domain_transfer_out(*, domain: Domain, actor=None) -> Domain:
    domain = _locked(domain)
    if domain.status in GONE:
        raise Conflict("This domain was transferred out already.")
    before = audit.snapshot(domain, FIELDS)
    registrars.get(domain.registrar).transfer_out(domain)
    domain.status = DomainStatus.TRANSFERRED_OUT
    domain.auto_renew = False
    domain.save()
    audit.record(action="domain.transfer_out", obj=domain, before=before, after=audit.snapshot(domain, FIELDS),
                 **_actor(actor))  # fmt: skip
    return domain


def domains_expire(*, today: date | None = None) -> int:
    """Every tenant's domains past their expiry become ``expired`` (the daily beat task)."""
    from apps.tenancy.scoping import tenant_scope

    today = today or timezone.localdate()
    done = 0
    due = Domain.all_tenants.filter(status__in=[DomainStatus.ACTIVE, DomainStatus.PENDING_VERIFICATION],
                                    expires_at__lt=today).select_related("tenant")  # fmt: skip
    for domain in due:
        with tenant_scope(domain.tenant), transaction.atomic():
            locked = _locked(domain)
            if locked.status in (DomainStatus.ACTIVE, DomainStatus.PENDING_VERIFICATION) and locked.expires_at < today:
                before = audit.snapshot(locked, FIELDS)
                locked.status = DomainStatus.EXPIRED
                locked.save()
                audit.record(action="domain.expire", obj=locked, before=before, after=audit.snapshot(locked, FIELDS))
                done += 1
    return done


def domain_usable(*, name: str, customer) -> bool:
    """May ``customer`` use ``name`` for a website or mail? Yes if the tenant does not hold the
    domain, or holds it for this customer, or holds it verified and active."""
    domain = Domain.objects.filter(name=domain_name(name)).first()
    if domain is None or domain.customer_id == getattr(customer, "pk", customer):
        return True
    return domain.status == DomainStatus.ACTIVE and domain.verified_at is not None
