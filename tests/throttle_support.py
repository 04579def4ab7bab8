"""The throttles' cache for a test: the suite's local-memory cache (the generic path, also the database
cache's) or the real Redis that scripts/test.sh starts (``REDIS_URL``: the Lua sliding-window path).

A Redis cache here has a key prefix of its own and is cleaned by that prefix, never flushed: other
tests (xdist workers, the Celery broker) share the server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from django.core.cache import cache as default_cache
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import SimpleRateThrottle


def redis_cache(prefix: str) -> RedisCache:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set (scripts/test.sh starts a Redis and sets it)")
    return RedisCache(url, {"KEY_PREFIX": prefix})


def drop_prefix(cache: RedisCache, prefix: str) -> None:
    client = cache._cache.get_client(write=True)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


@pytest.fixture(params=["locmem", "redis"])
def throttle_cache(request, monkeypatch) -> Iterator:
    """Every throttle counts in this cache for the test (parametrized: each throttling test runs twice)."""
    if request.param == "locmem":
        default_cache.clear()
        yield default_cache
        return
    prefix = f"test-throttle-{uuid.uuid4().hex}"
    cache = redis_cache(prefix)
    monkeypatch.setattr(SimpleRateThrottle, "cache", cache)
    try:
        yield cache
    finally:
        drop_prefix(cache, prefix)
