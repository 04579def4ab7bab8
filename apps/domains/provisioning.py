"""A ``domain`` product sold through billing: the subscription pays for the registration and its
renewals.

- ``subscription.activate`` (the first invoice paid): the zone is made with the tenant's
  nameservers (its domain settings, else the platform's) unless the product says
  ``config.zone: false``, and the domain is stored with a ``domain.register`` job for as many years
  as the subscription's cycle (annual, biennial, triennial) through the product's registrar
  (``config.registrar``) or the tenant's.
- A renewal invoice paid (``PAID`` hook below) stores the ``domain.renew`` job of that period; the
  domain's own auto-renew and renewal price stay off, the subscription bills it.
- A registration the registry refuses for good (or that fails its last attempt) follows the
  tenant's ``on_failed_registration``: ``refund`` issues a credit note for the subscription's lines
  on the paid invoice (the customer's credit balance gets the money) and cancels the subscription;
  ``retry`` keeps the payment and leaves the job failed at /api/v1/ops/provisioning for staff to
  retry once the cause is fixed (a transient fault is retried with backoff either way).
- ``suspend``/``resume`` change nothing at the registry (a registered domain is not suspended for
  non-payment); ``cancel`` leaves the domain registered until it expires, unrenewed.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from apps.audit import services as audit
from apps.billing import periods
from apps.billing.locks import lock_invoice, lock_subscription
from apps.billing.models import CreditNoteLine, InvoiceStatus, SubscriptionCharge, SubscriptionStatus
from apps.billing.services.credit_notes import credit_note_create
from apps.billing.services.hooks import PAID
from apps.billing.services.subscriptions import register_provisioner, subscription_cancel_now
from apps.common.exceptions import Conflict, InvalidInput
from apps.dns import services as dns_services
from apps.dns.models import Zone
from apps.jobs.registry import PermanentError
from apps.tenancy.scoping import tenant_scope

from . import services
from .models import Domain, FailedRegistration, RegistrarStatus

PRODUCT_TYPE = "domain"
LIVE = (SubscriptionStatus.PENDING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE,
        SubscriptionStatus.SUSPENDED)  # fmt: skip


def years_of(sub) -> int:
    months = periods.CYCLE_MONTHS.get(sub.cycle, 0)
    if months < 12 or months % 12:
        raise PermanentError(f"A domain is registered for whole years: the {sub.cycle} cycle cannot pay for one.")
    return months // 12


def _domain_of(sub) -> Domain | None:
    return Domain.objects.filter(subscription=sub).first()


@transaction.atomic
def activate(sub) -> dict:
    domain = _domain_of(sub)
    if domain is not None:
        return {"domain": str(domain.pk), "created": False}
    years = years_of(sub)
    try:
        name = services.domain_name((sub.config or {}).get("domain") or "")
    except InvalidInput as exc:
        raise PermanentError(f"The subscription names no valid domain (config.domain): {exc.message}") from exc
    try:
        return _activate(sub, name, years)
    except Conflict as exc:
        if exc.code == "name_taken":  # another account holds the name here: no retry changes that
            raise PermanentError(exc.message) from exc
        raise  # e.g. no DNS node yet: retried with backoff


def _activate(sub, name: str, years: int) -> dict:
    product_config = sub.product.config or {}
    nameservers = services.tenant_nameservers(sub.tenant)
    zone = None
    if product_config.get("zone", True) and not Zone.objects.filter(name=name).exists():
        # The zone answers before the registry delegates to it.
        zone = dns_services.zone_create(tenant=sub.tenant, name=name, nameservers=nameservers)
    existing = Domain.objects.select_for_update().filter(name=name).first()
    if existing is not None:
        live = existing.subscription_id and existing.subscription.status in LIVE
        if live:
            raise PermanentError(f"{name} is paid by another subscription already.")
        # A domain kept after a refunded order, or one managed by hand: this subscription takes it
        # over; a domain registered already is not registered again (apply_registration skips it).
        with audit.change(existing, "domain.subscription", actor=audit.SYSTEM):
            existing.subscription = sub
            existing.customer = sub.customer
            existing.auto_renew = False
            existing.renewal_price = None
            if existing.registrar_state != RegistrarStatus.OK:
                existing.registrar_state = RegistrarStatus.PENDING
                existing.pending_nameservers = nameservers
            existing.save()
        services.domains.enqueue(existing, "domain.register", key=f"domain.register:{existing.pk}:{sub.pk}",
                                 years=years, expires_at=None)  # fmt: skip
        return {"domain": str(existing.pk), "created": False, "zone": str(zone.pk) if zone else None}
    registrar = product_config.get("registrar") or services.domain_settings(sub.tenant).registrar
    domain = services.domain_create(tenant=sub.tenant, name=name, customer=sub.customer, registrar=registrar,
                                    years=years, nameservers=nameservers, auto_renew=False,
                                    subscription=sub)  # fmt: skip
    return {"domain": str(domain.pk), "created": True, "zone": str(zone.pk) if zone else None}


def suspend(sub) -> dict:
    return {"changed": False, "reason": "a registered domain is not suspended at the registry"}


def resume(sub) -> dict:
    return {"changed": False, "reason": "a registered domain is not suspended at the registry"}


def cancel(sub) -> dict:
    domain = _domain_of(sub)
    # The registration was paid for its years: it runs to its expiry and is not renewed.
    return {"domain": str(domain.pk) if domain else None, "changed": False}


register_provisioner(PRODUCT_TYPE, activate=activate, suspend=suspend, resume=resume, cancel=cancel)


@PAID.register()
def renew_paid_domains(invoice) -> None:
    """A paid renewal period of a ``domain`` subscription renews its domain (one job per period)."""
    charges = SubscriptionCharge.all_tenants.filter(
        invoice_line__invoice=invoice, kind=SubscriptionCharge.Kind.RECURRING, subscription__product__type=PRODUCT_TYPE
    ).select_related("subscription")
    for charge in charges:
        sub = charge.subscription
        if charge.period_start <= sub.anchor_date:
            continue  # the first period: activation registers the domain
        with tenant_scope(invoice.tenant):
            domain = _domain_of(sub)
            if domain is None or domain.status in services.GONE or domain.expires_at is None:
                continue
            services.domain_renew(domain=domain, years=years_of(sub), today=timezone.localdate())


def _paid_invoices(sub_id) -> set:
    return set(
        SubscriptionCharge.all_tenants.filter(
            subscription_id=sub_id, invoice_line__invoice__status=InvoiceStatus.PAID
        ).values_list("invoice_line__invoice_id", flat=True)
    )


def _refund(sub, reason: str) -> list[str]:
    """Credit the subscription's lines on its paid invoices to the customer's balance; the credit
    note numbers issued."""
    lines = (
        SubscriptionCharge.all_tenants.filter(subscription=sub, invoice_line__isnull=False,
                                              invoice_line__invoice__status=InvoiceStatus.PAID)
        .select_related("invoice_line__invoice")
    )  # fmt: skip
    by_invoice: dict = {}
    for charge in lines:
        line = charge.invoice_line
        credited = CreditNoteLine.all_tenants.filter(invoice_line=line).aggregate(s=Sum("amount"))["s"] or Decimal(0)
        left = line.amount - line.discount - credited
        if left > 0:
            by_invoice.setdefault(line.invoice, []).append({"invoice_line": line.pk, "amount": left})
    return [credit_note_create(invoice=invoice, lines=items, reason=reason).number
            for invoice, items in by_invoice.items()]  # fmt: skip


@transaction.atomic
def registration_failed(domain_id, message: str) -> dict:
    """A registration failed for good: record it and apply the tenant's choice (module docstring).
    Billing's rows are locked before the domain's, as a payment's hooks lock them."""
    domain = Domain.all_tenants.select_related("tenant").filter(pk=domain_id).first()
    policy = None
    if domain is not None and domain.subscription_id is not None:
        with tenant_scope(domain.tenant):
            policy = services.domain_settings(domain.tenant).on_failed_registration
            if policy == FailedRegistration.REFUND:
                # Billing's order: each paid invoice (after its subscriptions), then this subscription.
                for invoice_id in sorted(_paid_invoices(domain.subscription_id)):
                    lock_invoice(invoice_id)
                sub = lock_subscription(domain.subscription_id)
                if sub.status != SubscriptionStatus.CANCELLED:  # else: refunded by an earlier run
                    notes = _refund(sub, f"Registration of {domain.unicode_name} failed: {message}"[:500])
                    subscription_cancel_now(sub)
                    locked = services.domains.locked(domain)
                    with audit.change(locked, "domain.registration_refunded", actor=audit.SYSTEM) as change:
                        locked.registrar_state = RegistrarStatus.ERROR
                        locked.last_error = (f"{message} Refunded to the customer's credit "
                                             f"({', '.join(notes) or 'nothing was paid'}).")  # fmt: skip
                        locked.save()
                        change.mark(credit_notes=notes)
                    return {"policy": policy, "refunded": notes}
    services.registrar_failed(domain_id, message)
    return {"policy": policy}
