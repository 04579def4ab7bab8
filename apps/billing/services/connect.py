"""Stripe Connect: a tenant's own Stripe account, connected to the platform.

The tenant starts onboarding (a new Express or Standard account, or one it already has and has
connected to the platform); Stripe's Account Link takes its owner through Stripe's own forms, and
``account.updated`` events tell us when the account can take charges. Only the account's id is
stored: the platform's key acts on it (``stripe_account``), no tenant secret key is ever asked for.
The platform's fee per tenant is set by operators (the admin) only.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput

from ..models import StripeConnection
from . import stripe_gateway

ACCOUNT_ID = re.compile(r"^acct_[A-Za-z0-9]{1,64}$")
MAX_FEE_PERCENT = Decimal(50)


def connection_of(tenant) -> StripeConnection | None:
    """The tenant's connection row (live or disconnected), if it ever connected."""
    return StripeConnection.objects.filter(tenant_id=getattr(tenant, "pk", tenant)).first()


def _lock(tenant) -> StripeConnection | None:
    return StripeConnection.objects.select_for_update().filter(tenant_id=getattr(tenant, "pk", tenant)).first()


def apply_account(connection: StripeConnection, account: dict, *, at: datetime | None = None) -> bool:
    """Take the state of a Stripe Account object (a webhook's or the API's); an older state than the
    one held changes nothing. Returns whether anything changed. The caller holds the row's lock."""
    if at is not None and connection.status_at is not None and at < connection.status_at:
        return False
    requirements = account.get("requirements") or {}
    due = requirements.get("currently_due") if isinstance(requirements, dict) else None
    new = {
        "charges_enabled": account.get("charges_enabled") is True,
        "payouts_enabled": account.get("payouts_enabled") is True,
        "details_submitted": account.get("details_submitted") is True,
        "requirements_due": [str(item)[:200] for item in due][:100] if isinstance(due, list) else [],
    }
    changed = any(getattr(connection, key) != value for key, value in new.items())
    with audit.change(connection, "stripe_connection.status", actor=audit.SYSTEM) as event:
        for key, value in new.items():
            setattr(connection, key, value)
        # Stripe's event times are whole seconds: a state read now counts from the start of this second,
        # so an event of the same second (possibly newer than what we read) still applies.
        connection.status_at = at or timezone.now().replace(microsecond=0)
        connection.save()
        if not changed:
            event.skip()
    return changed


@transaction.atomic
def connect_start(
    *,
    tenant,
    actor=None,
    account_type: str = StripeConnection.AccountType.EXPRESS,
    account_id: str = "",
    email: str = "",
    country: str = "",
    return_url: str = "",
    refresh_url: str = "",
) -> tuple[StripeConnection, dict]:
    """Connect the tenant's Stripe account (a new one, or ``account_id`` it already has) and answer
    Stripe's onboarding link. Again later: the same account, a fresh link (they expire in minutes)."""
    if account_type not in StripeConnection.AccountType.values:
        raise InvalidInput("The account type is express or standard.", field="account_type")
    if account_id and not ACCOUNT_ID.match(account_id):
        raise InvalidInput("A Stripe account id looks like acct_1Nv0FGQ9RKHgCVdK.", field="account_id")
    connection = _lock(tenant)
    live = connection is not None and connection.live
    if live and account_id and account_id != connection.account_id:
        raise Conflict(
            f"This tenant is connected to {connection.account_id}: disconnect it before connecting another.",
            code="stripe_already_connected",
        )
    if live:
        account = stripe_gateway.account_retrieve(connection.account_id)
    elif account_id:
        account = stripe_gateway.account_retrieve(account_id)  # Stripe shows only accounts connected to us
    else:
        attempt = connection.disconnected_at.strftime("%Y%m%dT%H%M%S%f") if connection is not None else "first"
        account = stripe_gateway.account_create(
            tenant_id=tenant.pk, account_type=account_type, email=email, country=country, attempt=attempt
        )
    fresh = not live
    if fresh:
        before = audit.snapshot(connection) if connection is not None else None
        connection = connection or StripeConnection(tenant=tenant)
        connection.account_id = account.id
        connection.account_type = str(getattr(account, "type", None) or account_type)[:10]
        if connection.account_type not in StripeConnection.AccountType.values:
            connection.account_type = account_type
        connection.connected_at = timezone.now()
        connection.disconnected_at = None
        connection.status_at = None
        try:
            with transaction.atomic():
                connection.save()
        except IntegrityError as exc:
            raise Conflict(
                f"Stripe account {account.id} is connected to another tenant.", code="stripe_account_taken"
            ) from exc
        audit.record(
            action="stripe_connection.connect", obj=connection, tenant=tenant, before=before,
            after=audit.snapshot(connection), **audit.by(actor),
        )  # fmt: skip
    apply_account(connection, account.to_dict() if hasattr(account, "to_dict") else dict(account))
    base = settings.MPANEL_FRONTEND_URL.rstrip("/")
    link = stripe_gateway.account_link(
        account_id=connection.account_id,
        refresh_url=refresh_url or f"{base}/billing/stripe/connect?refresh=1",
        return_url=return_url or f"{base}/billing/stripe/connect?return=1",
    )
    return connection, {"url": link.url, "expires_at": link.expires_at}


@transaction.atomic
def connect_disconnect(*, tenant, actor=None, reason: str = "by the tenant") -> StripeConnection:
    """Stop charging on the tenant's account: new payments are manual until it connects again.
    Payments already made stay refundable on the account they went to."""
    connection = _lock(tenant)
    if connection is None or not connection.live:
        raise Conflict("This tenant has no connected Stripe account.", code="stripe_not_connected")
    with audit.change(connection, "stripe_connection.disconnect", actor=actor) as event:
        event.mark(reason=reason)
        connection.disconnected_at = timezone.now()
        connection.charges_enabled = False
        connection.save()
    return connection


@transaction.atomic
def connect_set_fee(*, connection: StripeConnection, percent, actor=None) -> StripeConnection:
    """The platform's fee on each of the tenant's card payments (operators only: the admin)."""
    try:
        value = Decimal(str(percent)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidInput("The platform fee is a percentage, e.g. 2.5.", field="platform_fee_percent") from exc
    if not Decimal(0) <= value <= MAX_FEE_PERCENT:
        raise InvalidInput(f"The platform fee is between 0 and {MAX_FEE_PERCENT} %.", field="platform_fee_percent")
    connection = StripeConnection.objects.select_for_update().get(pk=connection.pk)
    with audit.change(connection, "stripe_connection.fee", actor=actor):
        connection.platform_fee_percent = value
        connection.save()
    return connection


def account_deauthorized(connection: StripeConnection) -> None:
    """Stripe says the account's owner disconnected the platform (``account.application.deauthorized``)."""
    with audit.change(connection, "stripe_connection.disconnect", actor=audit.SYSTEM) as event:
        event.mark(reason="deauthorized at Stripe")
        connection.disconnected_at = timezone.now()
        connection.charges_enabled = False
        connection.save()
