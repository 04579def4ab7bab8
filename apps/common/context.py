"""Per-request context (request id, client IP, actor) that services and audit read.

Kept in a ContextVar so that code far from the view (services, audit, job enqueueing)
can attribute its writes without the request being threaded through every call.
"""

from __future__ import annotations

import ipaddress
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestContext:
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ip: str | None = None
    user_agent: str = ""
    actor: Any = None  # a User or None (system)
    token_id: Any = None  # the bearer token that authenticated this request
    via: str = "system"  # api | admin | system
    force_delete: bool = False  # an ADMIN+ asked ``?force=true``: a failed before-delete step does not stop it


_current: ContextVar[RequestContext | None] = ContextVar("mpanel_request_context", default=None)


def current() -> RequestContext:
    """The active request's context; outside a request a throwaway one (system actor).

    Never installed implicitly: an actor set outside a request must not leak into later work.
    """
    ctx = _current.get()
    return ctx if ctx is not None else RequestContext()


def activate(ctx: RequestContext):
    return _current.set(ctx)


def reset(token) -> None:
    _current.reset(token)


def client_ip_from_request(request) -> str | None:
    """The peer address. X-Forwarded-For is trusted only from a configured proxy count."""
    from django.conf import settings

    hops = getattr(settings, "MPANEL_TRUSTED_PROXY_COUNT", 0)
    addr = request.META.get("REMOTE_ADDR")
    if hops:
        forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if len(forwarded) >= hops:
            addr = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(addr)) if addr else None
    except ValueError:
        return None
