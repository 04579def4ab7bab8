"""Rate limits shared by every process (CACHES: Redis in production, the database in the embedded
default), counted by the client address the rest of the platform trusts, and atomic under bursts."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from . import context

LOCK_TIMEOUT = 5  # seconds a crashed holder keeps the lock
LOCK_WAIT = 3.0  # seconds a request waits for it before it is refused


@contextmanager
def cache_lock(cache, key: str) -> Iterator[bool]:
    """Holds ``key`` against every process sharing ``cache`` (``add`` is atomic in Redis, in the
    database cache and in the local-memory one); yields False if it could not be had in time."""
    lock_key = f"{key}:lock"
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + LOCK_WAIT
    held = cache.add(lock_key, owner, timeout=LOCK_TIMEOUT)
    while not held and time.monotonic() < deadline:
        time.sleep(0.005)
        held = cache.add(lock_key, owner, timeout=LOCK_TIMEOUT)
    try:
        yield held
    finally:
        if held and cache.get(lock_key) == owner:
            cache.delete(lock_key)


class DynamicScopedRateThrottle(ScopedRateThrottle):
    """ScopedRateThrottle that reads its rates when asked, so deployments and tests can change them.

    DRF's own throttle (a) reads the history, trims it and writes it back, so requests that arrive
    together all read the same history and all pass, and (b) counts anonymous clients by the raw
    X-Forwarded-For header, which any client can vary at will. Here the read-modify-write runs under
    a lock in the shared cache, and the address is ``context.client_ip_from_request`` (the proxy
    hops of ``MPANEL_TRUSTED_PROXY_COUNT`` only).
    """

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_ident(self, request):
        return context.client_ip_from_request(request) or "unknown"

    def allow_request(self, request, view):
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        with cache_lock(self.cache, self.key) as held:
            if not held:
                # So many requests for one key at once that they queue for seconds: refuse (fail closed).
                self.now = self.timer()
                self.history = self.cache.get(self.key, [])
                return False
            self.history = self.cache.get(self.key, [])
            self.now = self.timer()
            while self.history and self.history[-1] <= self.now - self.duration:
                self.history.pop()
            if len(self.history) >= self.num_requests:
                return self.throttle_failure()
            return self.throttle_success()


class EmailRateThrottle(DynamicScopedRateThrottle):
    """The same rate again, counted per email address of the body (``email``): a password reset
    cannot mail-bomb one inbox from many addresses. The address is hashed into the key."""

    def get_cache_key(self, request, view):
        email = request.data.get("email") if hasattr(request.data, "get") else None
        if not isinstance(email, str) or not email.strip():
            return None  # the serializer refuses it; nothing is sent
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        return self.cache_format % {"scope": f"{self.scope}-email", "ident": digest}
