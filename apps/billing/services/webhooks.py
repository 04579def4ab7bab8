"""Provider webhooks (docs/api.md).

The signature is checked over the raw body before anything else. A verified event is stored
once by its id (a concurrent duplicate finds the stored row) and acknowledged; a worker then
applies it (``APPLY_TASK``, queued after the row commits: Stripe's advice, answer fast and work
after) under a lock on that row, so two copies, or two workers, still apply it once, and its
status moves in the transaction of what it applied. The answer asks for a drain (``DRAIN_TASK``)
only when none is asked for yet (a flag in the cache, ``nudge``; a process that asked less than
``MPANEL_WEBHOOK_NUDGE_SECONDS`` ago does not ask again): the drain applies every pending event, those of
one invoice together in one transaction (``drain``), and looks again until that window has passed since it
cleared the flag. An event stored but never applied (a worker
that died, a broker that lost the message) is applied by ``sweep`` (beat, every minute). With
``MPANEL_JOBS_EAGER`` (the embedded default, the test suite) it is applied before the answer, as
before. Unknown types are stored and acknowledged. Processing never assumes order: payments
compare the event's time with the state they hold.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import stripe
from celery import signature
from django.conf import settings
from django.core.cache import cache
from django.db import DataError, IntegrityError, transaction
from django.db.models import F
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.common import parsers, statements
from apps.common.exceptions import DomainError, InvalidInput
from apps.common.money import check_currency, parse_amount
from apps.tenancy.scoping import tenant_scope

from ..amounts import from_minor_units
from ..locks import lock_pending_webhook_events, lock_webhook_event
from ..models import CheckoutSession, Invoice, Payment, PaymentMethod, StripeConnection, WebhookEvent, WebhookSecret
from . import cards, connect, payments

logger = logging.getLogger(__name__)


class BadSignature(Exception):
    pass


# --- verification -----------------------------------------------------------------------------


def verify_stripe(raw: bytes, header: str | None):
    """The parsed body once its signature holds. ``stripe.Webhook.construct_event`` is this same
    check (``verify_header``) followed by an unbounded ``json.loads``: the body is parsed by our
    bounded reader instead (apps/common/parsers.py: InvalidJSON, a 400, for a nesting bomb).

    Stripe signs the platform's endpoint and its Connect endpoint (events of connected accounts)
    with two secrets; either proves the delivery is Stripe's. Which tenant a Connect event is about
    is decided by its ``account``, never by its payload (``receive``)."""
    secrets = [s for s in (settings.STRIPE_WEBHOOK_SECRET, settings.STRIPE_CONNECT_WEBHOOK_SECRET) if s]
    if not secrets:
        raise BadSignature("STRIPE_WEBHOOK_SECRET is not configured.")
    error: Exception | None = None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(raw, header, secret, tolerance=settings.MPANEL_WEBHOOK_TOLERANCE)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            error = exc
            continue
        return parsers.loads(raw)
    raise BadSignature(str(error))


def sign_generic(raw: bytes, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_generic(raw: bytes, header: str | None, secrets: list[str] | None = None):
    """Our own signature over ``t.body``. ``secrets``: a tenant endpoint's valid secrets (two while one
    is rotated); absent, the platform's ``MPANEL_GENERIC_WEBHOOK_SECRET``."""
    if secrets is None:
        secrets = [settings.MPANEL_GENERIC_WEBHOOK_SECRET] if settings.MPANEL_GENERIC_WEBHOOK_SECRET else []
        if not secrets:
            raise BadSignature("MPANEL_GENERIC_WEBHOOK_SECRET is not configured.")
    if not header:
        raise BadSignature("Missing X-Mpanel-Signature.")
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    timestamps = [v for k, v in parts if k.strip() == "t"]
    signatures = [v for k, v in parts if k.strip() == "v1"]
    if len(timestamps) != 1 or not signatures or not timestamps[0].isdigit():
        raise BadSignature("Malformed X-Mpanel-Signature.")
    timestamp = int(timestamps[0])
    if abs(time.time() - timestamp) > settings.MPANEL_WEBHOOK_TOLERANCE:
        raise BadSignature("Timestamp outside the tolerance.")
    if not secrets:
        raise BadSignature("Signature does not match.")  # a tenant with no secret: the same answer as a bad one
    # Several v1 values are accepted, and several secrets, so a secret can be rotated without dropping
    # deliveries (the sender signs with both, or we hold both).
    for secret in secrets:
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, sig.strip()) for sig in signatures):
            return parsers.loads(raw)
    raise BadSignature("Signature does not match.")


# --- storing and processing -------------------------------------------------------------------


def receive(
    *,
    provider: str,
    event_id: str,
    type: str,
    created: datetime | None,
    payload: dict,
    raw: bytes,
    account: str = "",
    tenant=None,
):
    """Store the delivery once, then apply it.

    ``account``: the connected Stripe account a Connect event names; it binds the event to the tenant
    that connected that account, and an event of an account no tenant has connected (never, or no
    longer) is stored as ``unmatched`` and applies nothing. ``tenant``: the tenant whose own endpoint
    the delivery came to (bound the same way; its event ids are its own)."""
    scope = str(tenant.pk) if tenant is not None else ""
    defaults: dict = {}
    if account:
        connection = StripeConnection.objects.filter(account_id=account, disconnected_at__isnull=True).first()
        if connection is None:
            defaults = {"status": WebhookEvent.Status.UNMATCHED, "processed_at": timezone.now(),
                        "error": f"No tenant has {account} connected: nothing was applied."}  # fmt: skip
        else:
            defaults = {"tenant_id": connection.tenant_id}
    elif tenant is not None:
        defaults = {"tenant_id": tenant.pk}
    try:
        event = _store(
            provider=provider, event_id=event_id, scope=scope, account=account, type=type,
            event_created=created, payload=payload, raw_body=raw.decode("utf-8", errors="replace"), **defaults,
        )  # fmt: skip
    except IntegrityError:
        event = WebhookEvent.objects.get(provider=provider, scope=scope, event_id=event_id)
    if event.status in FINAL:
        return event  # applied (or unmatched) already: a repeated delivery changes nothing
    if settings.MPANEL_JOBS_EAGER:
        return process(event.pk)
    transaction.on_commit(nudge)
    return event


def _store(**fields) -> WebhookEvent:
    """The event's one INSERT. Outside a transaction (a request: no ATOMIC_REQUESTS) it is one statement
    in autocommit, atomic on its own, without a BEGIN and a COMMIT around it; inside one (a caller's, a
    test's) a savepoint, so a duplicate's IntegrityError does not break the caller's transaction."""
    # Its statement made once per process (apps.common.statements): a third of an answer was the ORM's INSERT.
    if transaction.get_connection().in_atomic_block:
        with transaction.atomic():
            return statements.create(WebhookEvent, **fields)
    return statements.create(WebhookEvent, **fields)


# The flag that says a drain is asked for or still at work: a delivery that finds it set sends nothing
# (that drain will read its row: it clears the flag only before its last look, ``drain``). It expires, so
# a lost message or a killed drain costs at most this long before the next delivery asks again (and the
# sweep applies what is left).
DRAIN_FLAG = "billing:webhooks:drain"
DRAIN_FLAG_TTL = 30
DRAIN_TASK = "billing.webhooks_drain"
DRAIN_BATCH = 200  # events read per round, and at most this many in one invoice's transaction
DRAIN_POLL = 0.02  # seconds between the looks of a drain waiting out the window after clearing its flag

# When this process last asked for a drain (``time.monotonic``); -inf: never, or its last ask failed.
_asked_at = float("-inf")


def nudge() -> None:
    """After a stored event commits: ask for a drain unless one is already asked for (one cache round
    trip; the broker message only when the flag was not set).

    A process that asked less than ``MPANEL_WEBHOOK_NUDGE_SECONDS`` (W) ago does not ask again: under a
    burst that is one round trip per process and W instead of one per delivery. Its row is still read by a
    drain: its ask at ``a`` either set the flag and sent a drain, or found it set; either way some drain
    clears the flag after ``a`` and then waits W before its last look (``drain``), so that look comes after
    ``a + W``, when every row this process committed without asking is there to see. (A flag that expires
    with no drain to clear it, a lost message or a killed worker, is the sweep's, as before.)"""
    global _asked_at
    window = settings.MPANEL_WEBHOOK_NUDGE_SECONDS
    now = time.monotonic()
    if window > 0 and now - _asked_at < window:
        return
    _asked_at = now  # before the ask: the window counts from no later than the flag was seen
    try:
        if cache.add(DRAIN_FLAG, 1, timeout=DRAIN_FLAG_TTL):
            signature(DRAIN_TASK).delay()
    except Exception:
        _asked_at = float("-inf")  # nothing was asked for: the next delivery asks
        raise


def forget_nudge() -> None:
    """This process asks again at its next delivery (tests)."""
    global _asked_at
    _asked_at = float("-inf")


# The invoice an event is about, read from its payload in SQL (generic: data.invoice_id; Stripe:
# data.object.metadata.mpanel_invoice_id): events of one invoice are applied in one transaction.
INVOICE_KEY = Coalesce(KT("payload__data__invoice_id"), KT("payload__data__object__metadata__mpanel_invoice_id"))


def drain(limit: int = 10 * DRAIN_BATCH) -> int:
    """Apply the pending events, oldest first: those naming one invoice in one transaction (the event
    rows locked together, then applied in arrival order as ``process`` applies each, a run of payments
    together: ``apply_in_order``), every other event alone. Exactly once as ``process``: an event is applied
    only while its row is locked and still ``received``; one another worker holds is skipped (that worker
    applies it). Stops after ``limit`` events (the next delivery or the sweep asks again). How many it applied.

    The flag stays set while the drain finds work, so deliveries meanwhile send no message (their rows
    are read by its next round, in larger groups); once a round finds nothing (or only events other workers
    hold), it clears the flag and looks again, every ``DRAIN_POLL`` until ``MPANEL_WEBHOOK_NUDGE_SECONDS`` have
    passed (a process that asked for a drain that long ago or less may have stored rows since without asking
    again: ``nudge``), the last one begun after that: a delivery that found the flag set committed its row
    before it, so it sees it, and any later one asks for another drain. A drain that reaches ``limit`` hands
    over instead (``_hand_over``): the rows of deliveries that counted on it without asking are the next
    drain's, not left for the sweep (a burst's last deliveries, within their window, ask for nothing). An
    error clears the flag (the sweep applies what is left)."""
    done, cleared, handed_over, deadline = 0, False, False, 0.0
    try:
        while True:
            if done >= limit:
                _hand_over()
                handed_over = True
                break
            looked_at = time.monotonic()  # the look below sees every row committed before this
            pending = list(
                WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED)
                .order_by("created_at", "pk")
                .annotate(invoice_key=INVOICE_KEY)
                .values_list("pk", "invoice_key")[:DRAIN_BATCH]
            )
            applied = 0
            if pending:
                groups: dict = {}
                for pk, invoice_key in pending:
                    groups.setdefault(invoice_key or pk, []).append(pk)
                applied = sum(apply_batch(pks) for pks in groups.values())
                done += applied
            if applied:
                continue
            # Nothing (left) for this drain: every pending event, if any, is held by another worker, which applies it.
            if not cleared:
                cache.delete(DRAIN_FLAG)  # from now on a delivery asks for another drain
                cleared = True
                # A little more than the window: it is measured by another process's clock.
                deadline = time.monotonic() + settings.MPANEL_WEBHOOK_NUDGE_SECONDS * 1.1
                continue  # the last look (or the first of those until the deadline)
            if looked_at >= deadline:
                break  # this look began after the window: it was the last one needed
            # What comes meanwhile is applied at once, not after the wait.
            time.sleep(max(0.0, min(DRAIN_POLL, deadline - time.monotonic())))
    finally:
        if not cleared and not handed_over:
            cache.delete(DRAIN_FLAG)
    return done


def _hand_over() -> None:
    """Set the flag (again, for its whole lifetime) and send the drain that will go on from here: it clears
    the flag and waits the window before its last look, as this one would have. A delivery that found the
    flag set (before or after this) counts on that drain. Should the message fail, the caller clears the
    flag, and the next delivery or the sweep asks again."""
    cache.set(DRAIN_FLAG, 1, timeout=DRAIN_FLAG_TTL)
    signature(DRAIN_TASK).delay()


def apply_batch(pks: list) -> int:
    """Apply these events (one invoice's) in one transaction; how many this call applied. Should the
    transaction fail as a whole (a database error no handler turns into ``failed``), each is applied
    again alone, so one event that cannot apply does not hold back the others (it stays ``received``
    for the sweep, as with ``process``)."""
    try:
        with transaction.atomic():
            events = lock_pending_webhook_events(pks)
            by_arrival = {pk: i for i, pk in enumerate(pks)}
            apply_in_order(sorted(events, key=lambda e: by_arrival[e.pk]))
            return len(events)
    except Exception:
        if len(pks) == 1:
            raise
        logger.exception("a batch of %s webhook events failed: applying each alone", len(pks))
    done = 0
    for pk in pks:
        try:
            if process(pk).status != WebhookEvent.Status.RECEIVED:
                done += 1
        except Exception:
            logger.exception("webhook event %s could not be applied; the sweep tries again", pk)
    return done


def apply_in_order(events: list[WebhookEvent]) -> None:
    """Apply these locked events in this order in the caller's transaction: a run of payments to one
    invoice together (``apply_payments_together``), every other event as ``_apply`` applies one. Once a
    run takes nothing (or fails and is rolled back), the rest go one by one: a repeat, a settling payment
    or a refund in between keeps the exact order and the per-event outcome of ``_apply``."""
    position, together = 0, True
    while position < len(events):
        taken = apply_payments_together(events[position:]) if together else None
        if not taken:
            together = together and taken is None  # a run that took nothing: the rest one by one
            _apply(events[position])
            taken = 1
        position += taken


def _generic_payment(event: WebhookEvent) -> tuple[str, payments.ProviderPayment] | None:
    """A generic ``payment.succeeded`` whose handler would reach ``payment_record`` with plain values
    (its invoice id and what it records), else None (``_apply`` gives it its own outcome)."""
    if (event.provider, event.type) != (WebhookEvent.Provider.GENERIC, "payment.succeeded"):
        return None
    try:
        data, amount, currency = _generic_data(event)
    except (DomainError, TypeError, ValueError, AttributeError, KeyError, ArithmeticError):
        return None
    invoice_id, ref = data.get("invoice_id"), data.get("reference") or event.event_id
    if not isinstance(invoice_id, str) or not isinstance(ref, str) or len(ref) > 200:
        return None
    entry = payments.ProviderPayment(
        amount=amount, currency=currency, method=PaymentMethod.GENERIC, provider_ref=ref, reference=ref,
        event_time=_event_time(event), provider_account=event.account,
    )  # fmt: skip
    return invoice_id, entry


def apply_payments_together(events: list[WebhookEvent]) -> int | None:
    """The leading generic payments of ``events`` that name one invoice by one route, recorded by
    ``payments.payment_record_many`` in one savepoint, their event rows marked in one UPDATE: the same
    rows, audit events and outcome as ``_apply`` one by one. How many it applied (0: apply the first alone);
    None when the first is no such payment (nothing was read: the next may start a run)."""
    head = events[0]
    first = _generic_payment(head)
    if first is None:
        return None
    invoice_id, entry = first
    run = [(head, entry)]
    route = (head.scope, head.account, head.bound_tenant_id)
    for event in events[1:]:
        found = _generic_payment(event) if (event.scope, event.account, event.bound_tenant_id) == route else None
        if found is None or found[0] != invoice_id:
            break
        run.append((event, found[1]))
    invoice = _safe_invoice(head, invoice_id)  # the same answer for every event of the run: one route, one id
    if invoice is None:
        return 0
    try:
        with transaction.atomic(), tenant_scope(invoice.tenant):
            recorded = payments.payment_record_many(invoice=invoice, entries=[entry for _event, entry in run])
            done = [event for event, _entry in run[: len(recorded)]]
            if done:
                now = timezone.now()
                WebhookEvent.objects.filter(pk__in=[event.pk for event in done]).update(
                    status=WebhookEvent.Status.PROCESSED, tenant=invoice.tenant, attempts=F("attempts") + 1,
                    processed_at=now, updated_at=now,
                )  # fmt: skip
    except Exception:
        # Rolled back to its savepoint: each is applied alone instead, with the outcome ``_apply`` gives it.
        logger.exception("%s webhook payments to invoice %s failed together", len(run), invoice_id)
        return 0
    for event in done:
        event.status, event.tenant, event.processed_at = WebhookEvent.Status.PROCESSED, invoice.tenant, now
        event.attempts += 1
    return len(done)


FINAL = {WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED, WebhookEvent.Status.UNMATCHED}
# The Celery task (apps/billing/tasks.py) that applies one stored event; what ``sweep`` picks up again.
APPLY_TASK = "billing.webhook_apply"
SWEEP_AFTER = timedelta(seconds=60)
SWEEP_BATCH = 500


def sweep(older_than: timedelta = SWEEP_AFTER) -> int:
    """Apply the events stored at least ``older_than`` ago and never applied (their worker died, or their
    message was lost); ``process`` locks each, so one a worker holds right now is applied once. How many."""
    cutoff = timezone.now() - older_than
    pending = WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED, created_at__lt=cutoff)
    done = 0
    for pk in pending.order_by("created_at").values_list("pk", flat=True)[:SWEEP_BATCH]:
        if process(pk).status != WebhookEvent.Status.RECEIVED:
            done += 1
    return done


def process(event_pk) -> WebhookEvent:
    with transaction.atomic():
        event = lock_webhook_event(event_pk)
        if event.status in FINAL:
            return event
        return _apply(event)


# What applying an event changes on its row (never its payload or body: not rewritten).
APPLIED_FIELDS = ["status", "error", "attempts", "processed_at", "tenant", "updated_at"]


def _apply(event: WebhookEvent) -> WebhookEvent:
    """Apply one locked, not yet final event in the caller's transaction; its status moves with it."""
    handler = HANDLERS.get((event.provider, event.type))
    event.attempts += 1
    if handler is None:
        event.status = WebhookEvent.Status.IGNORED
    else:
        try:
            with transaction.atomic():
                event.status = handler(event)
        except (DomainError, DataError) as exc:
            # Kept with its error for an operator; the provider gets a 200 (retrying cannot help).
            event.status = WebhookEvent.Status.FAILED
            event.error = getattr(exc, "message", None) or "A value is out of the range the database accepts."
        except (TypeError, ValueError, AttributeError, KeyError, ArithmeticError) as exc:
            # A payload of a shape no handler expects (a signed but malformed delivery): stored as
            # failed like any event that cannot apply, logged with its trace for an operator.
            logger.exception("webhook event %s (%s) could not be applied", event.event_id, event.type)
            event.status = WebhookEvent.Status.FAILED
            event.error = f"The event's payload could not be applied ({type(exc).__name__})."
    event.processed_at = timezone.now()
    event.save(update_fields=APPLIED_FIELDS)
    return event


def _event_time(event: WebhookEvent) -> datetime:
    return event.event_created or event.created_at


def _apply_payment(event, invoice_id, amount: Decimal, currency: str, method: str, provider_ref: str, reference: str):
    invoice = _safe_invoice(event, invoice_id)
    if invoice is None:
        return WebhookEvent.Status.UNMATCHED
    event.tenant = invoice.tenant
    with tenant_scope(invoice.tenant):
        payments.payment_record(
            invoice=invoice, amount=amount, currency=currency, method=method, provider_ref=provider_ref,
            reference=reference, event_time=_event_time(event), provider_account=event.account,
        )  # fmt: skip
    return WebhookEvent.Status.PROCESSED


def _safe_invoice(event: WebhookEvent, invoice_id):
    """The invoice an event names, only where the event may reach it: within the tenant its route
    bound it to (a Connect account's, a tenant endpoint's), whatever invoice id its metadata carries.
    A platform generic delivery reaches only tenants that have no endpoint of their own."""
    try:
        uuid.UUID(str(invoice_id))
    except (ValueError, TypeError):
        return None
    invoices = Invoice.all_tenants.select_related("tenant", "customer").filter(pk=invoice_id)
    bound = event.bound_tenant_id
    if bound is not None:
        invoice = invoices.filter(tenant_id=bound).first()
        if invoice is None and invoices.exists():
            logger.warning("webhook event %s names an invoice of another tenant than its route's", event.event_id)
            event.error = "The invoice it names belongs to another tenant than the account or endpoint it came by."
        return invoice
    invoice = invoices.first()
    if invoice is not None and event.provider == WebhookEvent.Provider.GENERIC and tenant_has_own_endpoint(invoice):
        event.error = "This tenant receives its generic events at its own endpoint, signed with its own secret."
        return None
    return invoice


def tenant_has_own_endpoint(invoice: Invoice) -> bool:
    return WebhookSecret.all_tenants.filter(tenant_id=invoice.tenant_id).exists()


def _refund_to(event, payment: Payment | None, total_refunded: Decimal):
    if payment is None:
        return WebhookEvent.Status.UNMATCHED
    event.tenant_id = payment.tenant_id
    delta = total_refunded - payment.refunded_amount
    if delta <= 0:
        return WebhookEvent.Status.PROCESSED  # already known (cumulative amounts make repeats harmless)
    with tenant_scope(payment.tenant):
        payments.payment_refund(payment=payment, amount=delta, reason="Refunded at the provider", call_provider=False)
    return WebhookEvent.Status.PROCESSED


# Stripe -----------------------------------------------------------------------------------------


def _object(value, name: str) -> dict:
    """A part of a payload that must be a JSON object (absent or null is an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be an object.", field=name)
    return value


def _stripe_object(event: WebhookEvent) -> dict:
    data = _object(event.payload.get("data"), "data")
    return _object(data.get("object"), "data.object")


def _metadata_invoice(obj: dict):
    return _object(obj.get("metadata"), "data.object.metadata").get("mpanel_invoice_id")


def _minor(obj: dict, key: str, currency: str) -> Decimal:
    """A Stripe amount (an integer of minor units) checked as money in ``currency``."""
    value = obj.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"data.object.{key} must be an integer of minor units.", field=f"data.object.{key}")
    return from_minor_units(value, currency, field=f"data.object.{key}")


def _currency(value) -> str:
    return check_currency(str(value or ""), field="currency")


def stripe_payment_intent_succeeded(event):
    pi = _stripe_object(event)
    currency = _currency(pi.get("currency"))
    invoice_id = _metadata_invoice(pi)
    amount = _minor(pi, "amount_received" if pi.get("amount_received") else "amount", currency)
    ref = str(pi.get("id") or "")
    outcome = _apply_payment(event, invoice_id, amount, currency, PaymentMethod.STRIPE, ref or None, ref)
    if outcome == WebhookEvent.Status.PROCESSED:
        cards.charge_settled_by_webhook(tenant_id=event.tenant_id, payment_intent=ref, succeeded=True)
    return outcome


def stripe_checkout_completed(event):
    session = _stripe_object(event)
    if session.get("payment_status") != "paid":
        return WebhookEvent.Status.PROCESSED  # paid later: payment_intent.succeeded will say so
    currency = _currency(session.get("currency"))
    invoice_id = _metadata_invoice(session)
    amount = _minor(session, "amount_total", currency)
    # The payment intent's id is the key both events share, so one payment is recorded for both.
    ref = str(session.get("payment_intent") or session.get("id") or "") or None
    outcome = _apply_payment(event, invoice_id, amount, currency, PaymentMethod.STRIPE, ref, str(session.get("id", "")))
    if outcome == WebhookEvent.Status.PROCESSED:
        CheckoutSession.all_tenants.filter(
            provider="stripe", session_id=session.get("id"), account=event.account, tenant_id=event.tenant_id
        ).update(status="paid")
    return outcome


def stripe_payment_failed(event):
    pi = _stripe_object(event)
    invoice = _safe_invoice(event, _metadata_invoice(pi))
    if invoice is None:
        return WebhookEvent.Status.UNMATCHED
    event.tenant = invoice.tenant
    error = str(_object(pi.get("last_payment_error"), "last_payment_error").get("message", "The payment failed."))
    currency = _currency(pi.get("currency", invoice.currency))
    with tenant_scope(invoice.tenant):
        payments.payment_record_failure(
            invoice=invoice, amount=_minor(pi, "amount", currency), method=PaymentMethod.STRIPE,
            provider_ref=str(pi.get("id") or ""), reason=error, event_time=_event_time(event),
        )  # fmt: skip
        cards.charge_settled_by_webhook(
            tenant_id=invoice.tenant_id, payment_intent=str(pi.get("id") or ""), succeeded=False, message=error
        )
    return WebhookEvent.Status.PROCESSED


def stripe_charge_refunded(event):
    charge = _stripe_object(event)
    ref = charge.get("payment_intent")
    # The payment made in the account the event comes from (a Connect event: in its tenant only).
    payments_ = Payment.all_tenants.select_related("tenant").filter(
        method=PaymentMethod.STRIPE, provider_ref=ref, provider_account=event.account
    )
    if event.bound_tenant_id is not None:
        payments_ = payments_.filter(tenant_id=event.bound_tenant_id)
    payment = payments_.first()
    currency = _currency(charge.get("currency"))
    return _refund_to(event, payment, _minor(charge, "amount_refunded", currency))


# Generic ----------------------------------------------------------------------------------------


def _generic_data(event) -> tuple[dict, Decimal, str]:
    data = _object(event.payload.get("data"), "data")
    currency = check_currency(data.get("currency"), field="data.currency")
    amount = parse_amount(data.get("amount"), currency, field="data.amount", label="data.amount")
    return data, amount, currency


def generic_payment_succeeded(event):
    data, amount, currency = _generic_data(event)
    ref = data.get("reference") or event.event_id
    return _apply_payment(event, data.get("invoice_id"), amount, currency, PaymentMethod.GENERIC, ref, ref)


def generic_payment_failed(event):
    data, amount, _currency = _generic_data(event)
    invoice = _safe_invoice(event, data.get("invoice_id"))
    if invoice is None:
        return WebhookEvent.Status.UNMATCHED
    event.tenant = invoice.tenant
    with tenant_scope(invoice.tenant):
        payments.payment_record_failure(
            invoice=invoice, amount=amount, method=PaymentMethod.GENERIC, provider_ref=data.get("reference") or
            event.event_id, reason=str(data.get("reason", "The payment failed.")), event_time=_event_time(event),
        )  # fmt: skip
    return WebhookEvent.Status.PROCESSED


def generic_refund_succeeded(event):
    data, amount, _currency = _generic_data(event)
    invoice = _safe_invoice(event, data.get("invoice_id"))
    payment = (
        Payment.all_tenants.select_related("tenant")
        .filter(method=PaymentMethod.GENERIC, provider_ref=data.get("reference"), invoice=invoice)
        .first()
        if invoice is not None
        else None
    )
    if payment is None:
        return WebhookEvent.Status.UNMATCHED
    # A generic refund names its own amount (not cumulative): it is applied once by event id.
    return _refund_to(event, payment, payment.refunded_amount + amount)


def _bound_connection(event) -> StripeConnection | None:
    if not event.account or event.bound_tenant_id is None:
        return None
    return (
        StripeConnection.objects.select_for_update()
        .filter(tenant_id=event.bound_tenant_id, account_id=event.account, disconnected_at__isnull=True)
        .first()
    )


def stripe_account_updated(event):
    """A connected account's state (Connect): whether it takes charges and pays out, what Stripe asks for."""
    connection = _bound_connection(event)
    account = _stripe_object(event)
    if connection is None or account.get("id") != event.account:
        return WebhookEvent.Status.UNMATCHED  # a platform event, or an object that is not the account
    connect.apply_account(connection, account, at=_event_time(event))
    return WebhookEvent.Status.PROCESSED


def stripe_account_deauthorized(event):
    """The account's owner disconnected the platform at Stripe: no more charges on it."""
    connection = _bound_connection(event)
    if connection is None:
        return WebhookEvent.Status.UNMATCHED
    connect.account_deauthorized(connection)
    return WebhookEvent.Status.PROCESSED


def _card_event(event) -> tuple[int | None, dict]:
    """A saved-card event is about a connected account's objects: only a Connect event bound to its
    tenant may touch that tenant's cards (a platform event names no account of a tenant)."""
    if not event.account or event.bound_tenant_id is None:
        return None, {}
    return event.bound_tenant_id, _stripe_object(event)


def stripe_setup_intent_succeeded(event):
    """A card saved on Stripe's page (Checkout in setup mode): listed for the customer whose Stripe
    Customer it names, in the event's tenant and account only."""
    tenant_id, intent = _card_event(event)
    if tenant_id is None:
        return WebhookEvent.Status.UNMATCHED
    card = cards.card_saved(tenant_id=tenant_id, account=event.account, setup_intent=intent)
    if card is None:
        event.error = "The SetupIntent names no customer of this tenant on this account: nothing was saved."
        return WebhookEvent.Status.UNMATCHED
    return WebhookEvent.Status.PROCESSED


def stripe_payment_method_detached(event):
    tenant_id, pm = _card_event(event)
    if tenant_id is None:
        return WebhookEvent.Status.UNMATCHED
    cards.card_detached(tenant_id=tenant_id, account=event.account, payment_method=pm)
    return WebhookEvent.Status.PROCESSED  # one we removed ourselves is already gone: nothing to do


def stripe_payment_method_updated(event):
    tenant_id, pm = _card_event(event)
    if tenant_id is None:
        return WebhookEvent.Status.UNMATCHED
    cards.card_updated(tenant_id=tenant_id, account=event.account, payment_method=pm)
    return WebhookEvent.Status.PROCESSED


HANDLERS = {
    ("stripe", "setup_intent.succeeded"): stripe_setup_intent_succeeded,
    ("stripe", "payment_method.detached"): stripe_payment_method_detached,
    ("stripe", "payment_method.updated"): stripe_payment_method_updated,
    ("stripe", "account.updated"): stripe_account_updated,
    ("stripe", "account.application.deauthorized"): stripe_account_deauthorized,
    ("stripe", "payment_intent.succeeded"): stripe_payment_intent_succeeded,
    ("stripe", "checkout.session.completed"): stripe_checkout_completed,
    ("stripe", "payment_intent.payment_failed"): stripe_payment_failed,
    ("stripe", "charge.refunded"): stripe_charge_refunded,
    ("generic", "payment.succeeded"): generic_payment_succeeded,
    ("generic", "payment.failed"): generic_payment_failed,
    ("generic", "refund.succeeded"): generic_refund_succeeded,
}


def is_stripe_event(payload) -> bool:
    """An Event envelope: an object with a string id and type that fit their columns."""
    if not isinstance(payload, dict):
        return False
    event_id, type_ = payload.get("id"), payload.get("type")
    return isinstance(event_id, str) and 0 < len(event_id) <= 255 and isinstance(type_, str) and 0 < len(type_) <= 100


# Stripe's `created` is a Unix time; anything outside these years is not one (and would overflow).
_EARLIEST, _LATEST = datetime(2000, 1, 1, tzinfo=UTC).timestamp(), datetime(9999, 1, 1, tzinfo=UTC).timestamp()


def stripe_created(payload: dict) -> datetime | None:
    created = payload.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or not _EARLIEST <= created <= _LATEST:
        return None
    return datetime.fromtimestamp(created, tz=UTC)
