"""Rate limits shared by every process (CACHES: Redis in production, the database in the embedded
default), counted by the client address the rest of the platform trusts, and atomic under bursts.

One rule everywhere, DRF's sliding-window log: a request passes when fewer than N of the client's
requests passed in the last ``duration`` seconds (a request exactly ``duration`` old no longer counts);
a refused request is not counted; the 429 carries DRF's ``Retry-After``. On Redis the log is a sorted
set updated by one Lua script (one round trip, atomic in Redis itself); on any other cache (the
database cache of the embedded default, the local-memory one of the test suite) it is DRF's list,
read and written under a lock in that cache.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache import cache as default_cache
from django.core.cache.backends.redis import RedisCache
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from . import context

LOCK_TIMEOUT = 5  # seconds a crashed holder keeps the lock
LOCK_WAIT = 3.0  # seconds a request waits for it before it is refused

# KEYS[1]: the client's log (a sorted set: score = the time a request passed, member unique).
# ARGV: now, the window's start (entries at or before it have left the window), the limit, this
# request's member, the key's lifetime in ms. Returns {1, count} when it passes (recorded), or
# {0, count, oldest score} when it is refused (not recorded). The oldest score is returned as
# Redis's string: a Lua number would be truncated to an integer on the way out.
SLIDING_WINDOW = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, count, oldest[2]}
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, count + 1}
"""
_script = None  # redis-py's Script: EVALSHA, and EVAL once when the server does not know it yet


def redis_window(cache: RedisCache, key: str, now: float, duration: int, limit: int) -> tuple[bool, int, float | None]:
    """One round trip: (passed, requests in the window, oldest request's time when refused)."""
    global _script
    # Django's RedisCache exposes no public client; ``_cache`` is its client wrapper (the same pool
    # the cache's own get/set use, so no second connection pool per process).
    client = cache._cache.get_client(key, write=True)
    if _script is None:
        _script = client.register_script(SLIDING_WINDOW)
    # A key of its own (":w"): a list pickled under the plain key by an older release is not a zset.
    redis_key = cache.make_and_validate_key(f"{key}:w")
    member = f"{now!r}:{uuid.uuid4().hex[:16]}"
    args = [repr(now), repr(now - duration), limit, member, int(duration * 1000)]
    reply = _script(keys=[redis_key], args=args, client=client)
    passed, count = bool(int(reply[0])), int(reply[1])
    oldest = float(reply[2]) if not passed and len(reply) > 2 else None
    return passed, count, oldest


def backend(cache):
    """The cache backend itself. DRF's throttles hold ``django.core.cache.cache``, a proxy to the default
    backend: ``isinstance`` sees the proxy, so without this the Redis path was never taken in production
    (every request took the locked path's six round trips; only tests that set a backend saw the script)."""
    return caches[DEFAULT_CACHE_ALIAS] if cache is default_cache else cache


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
    hops of ``MPANEL_TRUSTED_PROXY_COUNT`` only). On Redis the same rule runs as one Lua script
    (``redis_window``) instead: no lock, no history read or written by the web process.
    """

    window: tuple[int, float | None] | None = None  # (count, oldest) from Redis, for ``wait``

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
        cache = backend(self.cache)
        if isinstance(cache, RedisCache):
            self.now = self.timer()
            passed, count, oldest = redis_window(cache, self.key, self.now, self.duration, self.num_requests)
            self.window = (count, oldest)
            return passed if passed else self.throttle_failure()
        self.window = None
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

    def wait(self):
        """DRF's Retry-After, from the script's answer on Redis (the list is not read there)."""
        if self.window is None:
            return super().wait()
        count, oldest = self.window
        remaining = self.duration - (self.now - oldest) if oldest is not None else self.duration
        available = self.num_requests - count + 1
        if available <= 0:
            return None
        return remaining / float(available)


class EmailRateThrottle(DynamicScopedRateThrottle):
    """The same rate again, counted per email address of the body (``email``): a password reset
    cannot mail-bomb one inbox from many addresses. The address is hashed into the key."""

    def get_cache_key(self, request, view):
        email = request.data.get("email") if hasattr(request.data, "get") else None
        if not isinstance(email, str) or not email.strip():
            return None  # the serializer refuses it; nothing is sent
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        return self.cache_format % {"scope": f"{self.scope}-email", "ident": digest}
