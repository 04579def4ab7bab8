"""``Idempotency-Key`` on any POST: the first answer is stored and replayed (docs/api.md).

The key is claimed with a unique insert before the view runs, so two concurrent requests with
one key cannot both create: the second sees the claim and gets 409 until the first finishes.
A request that fails with a server error releases its claim, so the client can retry it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.http.request import RawPostDataException
from django.utils import timezone
from rest_framework.response import Response

from .exceptions import Conflict, InvalidInput
from .models import IdempotencyRecord

HEADER = "Idempotency-Key"
STALE_CLAIM = timedelta(minutes=5)


class Replay(Exception):
    def __init__(self, response: Response):
        self.response = response


def _fingerprint(request) -> str:
    try:
        body = request.body
    except RawPostDataException:  # multipart already parsed: fall back to the parsed fields
        body = json.dumps(sorted(request.POST.lists()), default=str).encode()
    h = hashlib.sha256()
    h.update(request.method.encode())
    h.update(request.path.encode())
    h.update(body)
    return h.hexdigest()


def principal(user) -> str:
    """The key's owner: keys of staff and of customers' portal users never meet, even with one pk."""
    return getattr(user, "idempotency_principal", None) or f"user:{user.pk}"


def claim(request, tenant) -> IdempotencyRecord | None:
    """Called before the view runs; raises Replay with the stored answer for a repeat."""
    key = request.headers.get(HEADER)
    if request.method != "POST" or not key or not request.user.is_authenticated:
        return None
    if len(key) > 255:
        raise InvalidInput("Idempotency-Key must be at most 255 characters.", field=HEADER)
    fingerprint = _fingerprint(request._request)
    tenant_key = str(tenant.pk) if tenant is not None else ""
    who = principal(request.user)
    staff = request.user if isinstance(request.user, get_user_model()) else None
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                principal=who, user=staff, tenant_key=tenant_key, key=key, fingerprint=fingerprint
            )
    except IntegrityError:
        pass
    existing = IdempotencyRecord.objects.get(principal=who, tenant_key=tenant_key, key=key)
    if existing.fingerprint != fingerprint:
        raise InvalidInput("This Idempotency-Key was used with a different request.", field=HEADER)
    if existing.state == IdempotencyRecord.State.DONE:
        response = Response(existing.response_body, status=existing.status_code)
        response["Idempotent-Replayed"] = "true"
        raise Replay(response)
    if timezone.now() - existing.created_at > STALE_CLAIM:
        # The first request died without answering; let this one take over the claim.
        existing.created_at = timezone.now()
        existing.save(update_fields=["created_at"])
        return existing
    raise Conflict("A request with this Idempotency-Key is still being processed.", code="idempotency_in_progress")


def complete(record: IdempotencyRecord | None, response, secret_fields: tuple[str, ...] = ()) -> None:
    if record is None:
        return
    if response.status_code >= 500:
        record.delete()
        return
    data = getattr(response, "data", None)
    try:
        body = json.loads(json.dumps(data, default=str))
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict):
        body = {k: (None if k in secret_fields else v) for k, v in body.items()}
    record.state = IdempotencyRecord.State.DONE
    record.status_code = response.status_code
    record.response_body = body
    record.save(update_fields=["state", "status_code", "response_body"])


def release(record: IdempotencyRecord | None) -> None:
    if record is not None:
        record.delete()


def purge_expired() -> int:
    cutoff = timezone.now() - settings.MPANEL_IDEMPOTENCY_TTL
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
