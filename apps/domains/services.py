"""Domain writes: registration bookkeeping through the registrar driver, ownership verification,
renewal (with an invoice line when the domain has a customer and a renewal price), expiry.

The registrar's work is done by jobs (apps/domains/jobs.py, the ``apply_*`` functions below): each
locks the domain, does nothing when its work is done already, and records what the registrar
answered as the system's act. ``domains`` (a Lifecycle) locks rows and stores those jobs."""

from __future__ import annotations

import re
from datetime import date, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.billing.services.invoices import invoice_create
from apps.common.exceptions import Conflict, InvalidInput
from apps.dns import validators as dns_validators
from apps.jobs.lifecycle import Lifecycle
from apps.jobs.models import JobStatus
from apps.names import claims
from apps.tenancy.scoping import tenant_scope

from . import crypto, registrars, verification
from .models import Domain, DomainSettings, DomainStatus, FailedRegistration, RegistrarStatus

GONE = (DomainStatus.TRANSFERRED_OUT,)
HOSTNAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*|[0-9a-f:.]+"
)

domains: Lifecycle[Domain] = Lifecycle(model=Domain, kind="domain", payload_key="domain", noun="domain",
                                       related=("tenant",))  # fmt: skip

# What the registrar jobs write is the system's act (audit.SYSTEM): with in-process jobs
# (MPANEL_JOBS_EAGER) a job runs inside the request whose commit dispatched it, whose actor
# ``actor=None`` would name.


def domain_name(value: str) -> str:
    try:
        return dns_validators.zone_name(value)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="name") from exc


def _nameservers(values) -> list[str]:
    out = []
    for value in values or []:
        try:
            out.append(dns_validators.zone_name(value))
        except InvalidInput as exc:
            raise InvalidInput(f"{value}: {exc.message}", field="nameservers") from exc
    if len(set(out)) != len(out):
        raise InvalidInput("Nameservers must differ.", field="nameservers")
    return out


def _job_row(domain_id) -> Domain | None:
    """A registrar job's domain, locked; ``None`` once deleted (the job then has nothing to do)."""
    return Domain.objects.select_for_update(of=("self",)).select_related("tenant").filter(pk=domain_id).first()


def _apply(domain: Domain, state: registrars.RegistrarState) -> None:
    domain.expires_at = state.expires_at
    domain.nameservers = list(state.nameservers)
    if state.registered_at is not None:
        domain.registered_at = state.registered_at
    if state.auth_info:
        domain.auth_info_encrypted = crypto.encrypt(state.auth_info)


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
    subscription=None,
    actor=None,
) -> Domain:
    """Store the domain and a ``domain.register`` job that asks the registrar (the answer's
    ``registrar_state`` is ``pending`` until it has run). ``subscription``: the ``domain`` product's
    subscription that paid for it (apps/domains/provisioning.py)."""
    registrars.get(registrar)  # an unknown registrar is a 400 now, not a failed job later
    name = domain_name(name)
    claims.claim(tenant, [name])  # nobody else's tree (apps/names/claims.py); locked until commit
    domain = Domain(tenant=tenant, name=name, customer=customer, registrar=registrar,
                    registered_at=registered_at, expires_at=expires_at, auto_renew=auto_renew,
                    renewal_price=renewal_price, pending_nameservers=_nameservers(nameservers),
                    registrar_state=RegistrarStatus.PENDING, subscription=subscription)  # fmt: skip
    try:
        with transaction.atomic():
            domain.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("This tenant has this domain already.", field="name") from exc
    # The create's "after" names the years asked for too (not a field of the row).
    audit.created(domain, "domain.create", actor=actor, marks={"years": years})
    domain.job = domains.enqueue(domain, "domain.register", actor=actor, key=f"domain.register:{domain.pk}",
                                 years=years, expires_at=expires_at.isoformat() if expires_at else None)  # fmt: skip
    return domain


@transaction.atomic
def domain_update(*, domain: Domain, data: dict, actor=None) -> Domain:
    """Bookkeeping fields change here; new nameservers are asked of the registrar by a
    ``domain.nameservers`` job (answered in ``pending_nameservers`` until it has run)."""
    domain = domains.locked(domain)
    if domain.status in GONE:
        raise Conflict("This domain was transferred out.")
    with audit.change(domain, "domain.update", actor=actor) as change:
        for key in ("customer", "auto_renew", "renewal_price"):
            if key in data:
                setattr(domain, key, data[key])
        if "customer" in data and data["customer"] != change.before["customer"] and domain.verified_at is not None:
            # Proof of ownership belongs to whoever proved it: a new customer proves it again.
            domain.verified_at = None
            domain.status = DomainStatus.PENDING_VERIFICATION if domain.status == DomainStatus.ACTIVE else domain.status
        if "expires_at" in data:
            if domain.registrar != "manual":
                raise InvalidInput("Only the manual registrar takes an expiry by hand.", field="expires_at")
            domain.expires_at = data["expires_at"]
        domain.job = None
        if "nameservers" in data:
            wanted = _nameservers(data["nameservers"])
            if wanted != list(domain.nameservers) or domain.pending_nameservers is not None:
                domain.pending_nameservers = wanted
                domain.registrar_state = RegistrarStatus.PENDING
                domain.job = domains.enqueue(domain, "domain.nameservers", actor=actor)
        domain.save()
    return domain


@transaction.atomic
def domain_delete(*, domain: Domain, actor=None) -> None:
    domain = domains.locked(domain)
    audit.deleted(domain, "domain.delete", actor=actor)
    domain.delete()


def domain_verify(*, domain: Domain, actor=None) -> Domain:
    """Look the challenge up (outside any transaction: DNS can be slow), then record the outcome.
    A refusal is audited in its own committed transaction, then raised."""
    if domain.status in GONE:
        raise Conflict("This domain was transferred out.")
    with transaction.atomic():
        claims.claim(domain.tenant_id, [domain.name])  # refused early, before a slow lookup
    found = verification.txt_values(domain.challenge_name)
    refused = None
    with transaction.atomic():
        # Proven, the domain holds its name: the claim is checked again under the lock until commit.
        claims.claim(domain.tenant_id, [domain.name])
        domain = domains.locked(domain)
        if verification.answered_by_another_tenant(domain):
            # Defence in depth: such a zone cannot exist under the claim rule, but one made before
            # it (or through a shared server the resolvers ask) must not prove anything.
            refused = Conflict(
                "The challenge is answered inside a DNS zone this platform serves for another account, "
                "so it cannot prove ownership of this domain.",
                code="verification_failed",
            )
            audit.record(action="domain.verify_failed", obj=domain,
                         after={"found": found[:10], "reason": "foreign_zone"}, **audit.by(actor))  # fmt: skip
        elif domain.challenge_value not in found:
            refused = Conflict(
                f"No TXT record {domain.challenge_name} with {domain.challenge_value!r} was found "
                f"(found: {found[:5] or 'nothing'}).",
                code="verification_failed",
            )
            audit.record(action="domain.verify_failed", obj=domain, after={"found": found[:10]}, **audit.by(actor))
        else:
            with audit.change(domain, "domain.verify", actor=actor):
                domain.verified_at = timezone.now()
                if domain.status == DomainStatus.PENDING_VERIFICATION:
                    domain.status = DomainStatus.ACTIVE
                domain.save()
    if refused is not None:
        raise refused
    return domain


def renew_key(domain: Domain, auto: bool) -> str:
    """The key names the expiry the renewal extends, so a second request (or a second sweep) for the
    same period finds the first job. The once-only guarantee is the job's own: it renews only while
    the expiry is still the one it was stored for (``apply_renewal``), so a manual and an automatic
    renewal of one period (two keys) renew it once too."""
    expiry = domain.expires_at.isoformat() if domain.expires_at else "none"
    return f"domain.renew:{domain.pk}:{expiry}:{'auto' if auto else 'manual'}"


@transaction.atomic
def domain_renew(*, domain: Domain, years: int = 1, actor=None, today: date | None = None, auto: bool = False):
    """Store a ``domain.renew`` job for the current period (or find the one stored already)."""
    domain = domains.locked(domain)
    if domain.status in GONE:
        raise Conflict("This domain was transferred out.")
    today = today or timezone.localdate()
    payload = {"years": years, "from_expiry": domain.expires_at.isoformat() if domain.expires_at else None,
               "today": today.isoformat(), "auto": auto}  # fmt: skip
    job = domains.enqueue(domain, "domain.renew", actor=actor, key=renew_key(domain, auto), **payload)
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise Conflict(f"The renewal of this period failed ({job.last_error[:200]}); retry job {job.pk} at "
                       "/api/v1/ops/provisioning.", code="renewal_failed")  # fmt: skip
    if not job.is_finished:
        domain.registrar_state = RegistrarStatus.PENDING
        domain.save(update_fields=["registrar_state", "updated_at"])
    domain.job = job
    return domain


@transaction.atomic
def apply_renewal(*, domain_id, years: int, from_expiry: str | None, today: date, auto: bool) -> dict:
    """The ``domain.renew`` job: renew through the driver, bill it, audit it, all in one
    transaction. It renews only the period it was stored for: once the expiry has moved (a run
    before this one did it), it does nothing, so running it twice renews once."""
    domain = _job_row(domain_id)
    if domain is None:
        return {"skipped": "domain deleted"}
    current = domain.expires_at.isoformat() if domain.expires_at else None
    if current != from_expiry:
        return {"skipped": f"renewed already (expires {current})"}
    if domain.status in GONE:
        return {"skipped": "transferred out"}
    if auto and not domain.auto_renew:
        return {"skipped": "auto-renew was turned off"}
    with audit.change(domain, "domain.renew", actor=audit.SYSTEM) as change:
        _apply(domain, registrars.get(domain.registrar).renew(domain, years=years, today=today))
        if domain.status == DomainStatus.EXPIRED:
            domain.status = DomainStatus.ACTIVE if domain.verified_at else DomainStatus.PENDING_VERIFICATION
        domain.registrar_state = RegistrarStatus.OK
        domain.last_error = ""
        domain.save()
        invoice = None
        if domain.customer_id and domain.renewal_price is not None:
            line = {"description": f"Domain renewal {domain.unicode_name} ({years} year{'s' if years > 1 else ''}, "
                                   f"until {domain.expires_at.isoformat()})",
                    "quantity": years, "unit_price": str(domain.renewal_price)}  # fmt: skip
            invoice = invoice_create(tenant=domain.tenant, customer=domain.customer, lines=[line])
        # The renewal's "after" names its invoice, and whether auto-renew asked for it.
        change.mark(invoice=str(invoice.pk) if invoice else None, auto=auto)
    return {"expires_at": domain.expires_at.isoformat(), "invoice": str(invoice.pk) if invoice else None}


@transaction.atomic
def apply_registration(*, domain_id, years: int, expires_at: str | None) -> dict:
    """The ``domain.register`` job: ask the registrar once; a domain it registered already is left."""
    domain = _job_row(domain_id)
    if domain is None:
        return {"skipped": "domain deleted"}
    if domain.registrar_state == RegistrarStatus.OK and domain.expires_at is not None:
        return {"skipped": "registered already"}
    with audit.change(domain, "domain.register", actor=audit.SYSTEM):
        # What is wanted now: a nameserver change stored after the create is sent with the registration.
        wanted = list(domain.pending_nameservers if domain.pending_nameservers is not None else domain.nameservers)
        state = registrars.get(domain.registrar).register(
            domain, years=years, nameservers=wanted, expires_at=date.fromisoformat(expires_at) if expires_at else None
        )
        _apply(domain, state)
        if domain.registrar != "manual" and domain.verified_at is None:
            # A registry created it for this customer: that proves ownership as a TXT record would.
            domain.verified_at = timezone.now()
            domain.status = DomainStatus.ACTIVE
        domain.pending_nameservers = None
        domain.registrar_state = RegistrarStatus.OK
        domain.last_error = ""
        domain.save()
    return {"expires_at": domain.expires_at.isoformat() if domain.expires_at else None}


@transaction.atomic
def apply_nameservers(*, domain_id) -> dict:
    """The ``domain.nameservers`` job: send the nameservers wanted *now* (a later change's job
    finds nothing left to do), so jobs that run late or twice converge."""
    domain = _job_row(domain_id)
    if domain is None or domain.pending_nameservers is None:
        return {"skipped": "nothing to change"}
    if domain.status in GONE:
        return {"skipped": "transferred out"}
    with audit.change(domain, "domain.nameservers", actor=audit.SYSTEM):
        _apply(domain, registrars.get(domain.registrar).set_nameservers(domain, nameservers=domain.pending_nameservers))
        domain.pending_nameservers = None
        domain.registrar_state = RegistrarStatus.OK
        domain.last_error = ""
        domain.save()
    return {"nameservers": domain.nameservers}


@transaction.atomic
def domain_transfer_out(*, domain: Domain, actor=None) -> Domain:
    """Store the ``domain.transfer_out`` job (once per domain); auto-renew stops now."""
    domain = domains.locked(domain)
    if domain.status in GONE:
        raise Conflict("This domain was transferred out already.")
    with audit.change(domain, "domain.transfer_out.request", actor=actor):
        domain.auto_renew = False
        domain.registrar_state = RegistrarStatus.PENDING
        domain.save()
    domain.job = domains.enqueue(domain, "domain.transfer_out", actor=actor, key=f"domain.transfer_out:{domain.pk}")
    return domain


@transaction.atomic
def apply_transfer_out(*, domain_id) -> dict:
    domain = _job_row(domain_id)
    if domain is None or domain.status in GONE:
        return {"skipped": "gone already"}
    with audit.change(domain, "domain.transfer_out", actor=audit.SYSTEM):
        registrars.get(domain.registrar).transfer_out(domain)
        domain.status = DomainStatus.TRANSFERRED_OUT
        domain.auto_renew = False
        domain.registrar_state = RegistrarStatus.OK
        domain.last_error = ""
        domain.save()
    return {"status": domain.status}


def registrar_failed(domain_id, message: str) -> None:
    Domain.all_tenants.filter(pk=domain_id).update(registrar_state=RegistrarStatus.ERROR, last_error=message[:2000])


def registrar_retrying(domain_id, message: str) -> None:
    """A registry fault the job will try again: the domain stays ``pending`` and says why it waits."""
    Domain.all_tenants.filter(pk=domain_id).update(last_error=f"Retrying: {message}"[:2000])


# --- the tenant's domain settings -----------------------------------------------------------------

SETTINGS_FIELDS = ("nameservers", "registrar", "on_failed_registration", "epp_host", "epp_port", "epp_client_id",
                   "epp_client_cert", "epp_ca_cert", "epp_admin_contact", "epp_tech_contact",
                   "epp_billing_contact")  # fmt: skip


def domain_settings(tenant) -> DomainSettings:
    """The tenant's domain settings (made with the defaults on first use)."""
    conf, _ = DomainSettings.objects.get_or_create(tenant=tenant)
    return conf


def settings_of(tenant) -> DomainSettings:
    """The tenant's settings as they apply now, without writing (the defaults, unsaved, until changed)."""
    tenant_id = getattr(tenant, "pk", tenant)
    return DomainSettings.objects.filter(tenant_id=tenant_id).first() or DomainSettings(tenant_id=tenant_id)


def tenant_nameservers(tenant) -> list[str]:
    """The nameservers a tenant's new zones and registrations get: its own, else the platform's."""
    conf = DomainSettings.objects.filter(tenant=tenant).first()
    return list((conf and conf.nameservers) or settings.MPANEL_DNS_NAMESERVERS)


def _host(value: str) -> str:
    value = (value or "").strip().rstrip(".").lower()
    if value and not HOSTNAME.fullmatch(value):
        raise InvalidInput("A host name (registry.example) or an IP address.", field="epp_host")
    return value


def _pem(value: str, field: str, marker: str) -> str:
    value = (value or "").strip()
    if value and f"-----BEGIN {marker}" not in value:
        raise InvalidInput(f"Paste the PEM text (-----BEGIN {marker}...).", field=field)
    return value + "\n" if value else ""


@transaction.atomic
def domain_settings_update(*, tenant, data: dict, actor=None) -> DomainSettings:
    """Change the tenant's domain settings. ``epp_password`` and ``epp_client_key`` are taken in
    clear and stored encrypted (an empty string clears them); the audit trail says they changed,
    never what they are."""
    conf = domain_settings(tenant)
    conf = DomainSettings.objects.select_for_update().get(pk=conf.pk)
    with audit.change(conf, "domain.settings.update", actor=actor) as change:
        for key in SETTINGS_FIELDS:
            if key not in data:
                continue
            value = data[key]
            if key == "nameservers":
                value = _nameservers(value)
                if len(value) == 1:
                    raise InvalidInput("Give at least two nameservers (or none for the platform's).",
                                       field="nameservers")  # fmt: skip
            elif key == "registrar":
                registrars.get(value)
            elif key == "on_failed_registration" and value not in FailedRegistration.values:
                raise InvalidInput(f"Choose one of {', '.join(FailedRegistration.values)}.", field=key)
            elif key == "epp_port" and not (isinstance(value, int) and 1 <= value <= 65535):
                raise InvalidInput("A port is 1 to 65535.", field="epp_port")
            elif key == "epp_host":
                value = _host(value)
            elif key == "epp_client_cert" or key == "epp_ca_cert":
                value = _pem(value, key, "CERTIFICATE")
            setattr(conf, key, value)
        secrets_changed = []
        if "epp_password" in data:
            conf.epp_password_encrypted = crypto.encrypt(data["epp_password"]) if data["epp_password"] else ""
            secrets_changed.append("epp_password")
        if "epp_client_key" in data:
            key = _pem(data["epp_client_key"], "epp_client_key", "")
            conf.epp_client_key_encrypted = crypto.encrypt(key) if key else ""
            secrets_changed.append("epp_client_key")
        if conf.epp_client_key_encrypted and not conf.epp_client_cert:
            raise InvalidInput("A client key needs its certificate.", field="epp_client_cert")
        if secrets_changed:
            change.mark(secrets_changed=secrets_changed)
        conf.save()
    return conf


def domains_auto_renew(*, today: date | None = None) -> list:
    """Every tenant's active auto-renewing domains that expire within ``MPANEL_DOMAIN_RENEW_DAYS``
    get a ``domain.renew`` job for their current period (the hourly beat task). Each domain is
    checked again under its row lock, so a sweep that overlaps another (or runs after the renewal
    it would ask for) stores nothing more."""
    today = today or timezone.localdate()
    horizon = today + timedelta(days=settings.MPANEL_DOMAIN_RENEW_DAYS)
    due = Domain.all_tenants.filter(status=DomainStatus.ACTIVE, auto_renew=True, expires_at__isnull=False,
                                    expires_at__lte=horizon).select_related("tenant")  # fmt: skip
    jobs = []
    for domain in due:
        with tenant_scope(domain.tenant), transaction.atomic():
            locked = domains.locked(domain)
            still_due = locked.status == DomainStatus.ACTIVE and locked.auto_renew and locked.expires_at
            if still_due and locked.expires_at <= horizon:
                jobs.append(domain_renew(domain=locked, years=1, today=today, auto=True).job)
    return jobs


def domains_expire(*, today: date | None = None) -> int:
    """Every tenant's domains past their expiry become ``expired`` (the daily beat task)."""
    today = today or timezone.localdate()
    done = 0
    due = Domain.all_tenants.filter(status__in=[DomainStatus.ACTIVE, DomainStatus.PENDING_VERIFICATION],
                                    expires_at__lt=today).select_related("tenant")  # fmt: skip
    for domain in due:
        with tenant_scope(domain.tenant), transaction.atomic():
            locked = domains.locked(domain)
            if locked.status in (DomainStatus.ACTIVE, DomainStatus.PENDING_VERIFICATION) and locked.expires_at < today:
                with audit.change(locked, "domain.expire"):
                    locked.status = DomainStatus.EXPIRED
                    locked.save()
                done += 1
    return done


def domain_usable(*, name: str, customer) -> bool:
    """May ``customer`` use ``name`` for a website or mail? Yes if the tenant does not hold the
    domain, or holds it for this customer, or holds it verified and active."""
    domain = Domain.objects.filter(name=domain_name(name)).first()
    if domain is None or domain.customer_id == getattr(customer, "pk", customer):
        return True
    return domain.status == DomainStatus.ACTIVE and domain.verified_at is not None
