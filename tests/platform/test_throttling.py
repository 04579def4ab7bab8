"""The rate limits (apps/common/throttling.py) on the real Redis that scripts/test.sh starts: the Lua
sliding window keeps DRF's rule (N requests per window, a request exactly one window old no longer
counts, refused requests not counted, Retry-After as DRF computes it) in one round trip, and clients
arriving at once through separate connections never get past the limit. The same checks run on the
local-memory cache (the generic path the database cache also takes)."""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import caches
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from apps.common.throttling import DynamicScopedRateThrottle
from tests.throttle_support import drop_prefix, redis_cache, throttle_cache  # noqa: F401 (fixture)


class View:
    throttle_scope = "testscope"


def _request(address: str = "192.0.2.10") -> Request:
    return Request(APIRequestFactory().post("/x/", REMOTE_ADDR=address))


@pytest.fixture
def rate(settings):
    def set_rate(value: str) -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "testscope": value},
        }

    return set_rate


class Clock:
    """DRF's ``timer`` for the throttles of a test: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.25

    def __call__(self) -> float:
        return self.now


def _throttle(clock: Clock) -> DynamicScopedRateThrottle:
    throttle = DynamicScopedRateThrottle()
    throttle.timer = clock
    return throttle


@pytest.mark.usefixtures("throttle_cache")
def test_the_limit_the_window_and_retry_after(rate):
    rate("3/min")
    clock = Clock()
    start = clock.now
    passed = []
    for step in range(5):
        clock.now = start + step  # one request a second
        passed.append(_throttle(clock).allow_request(_request(), View()))
    assert passed == [True, True, True, False, False]
    refused = _throttle(clock)
    assert refused.allow_request(_request(), View()) is False
    # DRF's answer: what is left of the oldest request's window, over the one request that frees.
    assert refused.wait() == pytest.approx(60 - (clock.now - start))
    # Another address has a budget of its own.
    assert _throttle(clock).allow_request(_request("192.0.2.11"), View()) is True
    # A request exactly one window old no longer counts (DRF drops ``<= now - duration``); the
    # refused ones were never counted, so one slot frees per passed request.
    clock.now = start + 60
    assert _throttle(clock).allow_request(_request(), View()) is True
    assert _throttle(clock).allow_request(_request(), View()) is False
    clock.now = start + 61
    assert _throttle(clock).allow_request(_request(), View()) is True
    clock.now = start + 62.5
    assert [_throttle(clock).allow_request(_request(), View()) for _ in range(2)] == [True, False]


def test_the_redis_path_is_one_script_and_expires_with_the_window(rate):
    rate("2/sec")
    prefix = f"test-throttle-{uuid.uuid4().hex}"
    cache = redis_cache(prefix)
    try:
        throttle = DynamicScopedRateThrottle()
        throttle.cache = cache
        assert throttle.allow_request(_request(), View()) is True
        client = cache._cache.get_client(write=True)
        (key,) = list(client.scan_iter(f"{prefix}:*"))
        assert key.decode().endswith(":w") and client.type(key) == b"zset"
        assert 0 < client.pttl(key) <= 1000  # gone with the window, like DRF's cache timeout
        assert client.zcard(key) == 1
    finally:
        drop_prefix(cache, prefix)


def test_concurrent_clients_cannot_exceed_the_limit_on_redis(rate):
    """Two clients (each its own connection pool, as two web processes have) send 40 requests at once
    for one address: exactly the limit passes."""
    rate("10/min")
    prefix = f"test-throttle-{uuid.uuid4().hex}"
    caches = [redis_cache(prefix), redis_cache(prefix)]
    barrier = threading.Barrier(8)

    def client(n: int) -> list[bool]:
        cache = caches[n % 2]
        barrier.wait()
        out = []
        for _ in range(5):
            throttle = DynamicScopedRateThrottle()
            throttle.cache = cache
            out.append(throttle.allow_request(_request("198.51.100.77"), View()))
        return out

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = [a for answers in pool.map(client, range(8)) for a in answers]
        assert answers.count(True) == 10 and answers.count(False) == 30
        # Nothing was taken through the generic path's lock.
        assert not [k for k in caches[0]._cache.get_client().scan_iter(f"{prefix}:*") if k.endswith(b":lock")]
    finally:
        drop_prefix(caches[0], prefix)


def test_the_default_cache_takes_the_redis_path_when_it_is_redis(rate, settings):
    """DRF's throttles hold ``django.core.cache.cache`` (a proxy, not the backend): with Redis as the
    default cache, as in production, the script runs (no lock taken, a sorted set written)."""
    if not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set (scripts/test.sh starts a Redis and sets it)")
    rate("5/min")
    prefix = f"test-throttle-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "KEY_PREFIX": prefix,
        }
    }
    cache = caches["default"]
    try:
        assert DynamicScopedRateThrottle().allow_request(_request("203.0.113.9"), View()) is True
        keys = list(cache._cache.get_client(write=True).scan_iter(f"{prefix}:*"))
        assert len(keys) == 1 and keys[0].endswith(b":w")
    finally:
        drop_prefix(cache, prefix)
