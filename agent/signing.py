"""Signed, time-limited requests between the panel and a node agent.

Headers: ``X-Mpanel-Timestamp`` (unix seconds), ``X-Mpanel-Nonce`` (random, single use) and
``X-Mpanel-Signature`` = hex HMAC-SHA256(secret, "<ts>.<nonce>.<METHOD>.<path>.<sha256(body)>").
The agent refuses a missing or wrong signature, a timestamp outside the tolerance and a nonce
seen before within it (a replay). Nonces live in memory, so a restarted agent would not know the
ones it saw before; it therefore also refuses requests signed before the second it started.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

TOLERANCE = 300  # seconds


def signature(secret: str, ts: str, nonce: str, method: str, path: str, body: bytes) -> str:
    message = f"{ts}.{nonce}.{method.upper()}.{path}.{hashlib.sha256(body).hexdigest()}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, method: str, path: str, body: bytes, now: float | None = None) -> dict[str, str]:
    ts = str(int(now if now is not None else time.time()))
    nonce = secrets.token_hex(16)
    return {
        "X-Mpanel-Timestamp": ts,
        "X-Mpanel-Nonce": nonce,
        "X-Mpanel-Signature": signature(secret, ts, nonce, method, path, body),
    }


class Verifier:
    """Checks signatures and remembers nonces for the tolerance window (thread-safe)."""

    def __init__(self, secret: str, tolerance: int = TOLERANCE):
        self.secret = secret
        self.tolerance = tolerance
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self.started = int(time.time())

    def verify(self, headers, method: str, path: str, body: bytes) -> str | None:
        """None when the request is authentic and fresh, else the reason it is refused."""
        refused = check(self.secret, headers, method, path, body, tolerance=self.tolerance)
        if refused:
            return refused
        if int(headers.get("X-Mpanel-Timestamp")) < self.started:
            return "stale request"  # signed before this process started: its nonces are not known here
        nonce, now = headers.get("X-Mpanel-Nonce"), time.time()
        with self._lock:
            for old, seen_at in list(self._seen.items()):
                if seen_at < now - 2 * self.tolerance:
                    del self._seen[old]
            if nonce in self._seen:
                return "replayed request"
            self._seen[nonce] = now
        return None


def check(secret: str, headers, method: str, path: str, body: bytes, *, tolerance: int = TOLERANCE,
          now: float | None = None) -> str | None:  # fmt: skip
    """The stateless part of a verification: signed, fresh, well-formed. The caller keeps the nonces
    (the agent in memory; the panel, which runs in several processes, in its database)."""
    ts, nonce, sig = (headers.get(h) for h in ("X-Mpanel-Timestamp", "X-Mpanel-Nonce", "X-Mpanel-Signature"))
    if not (ts and nonce and sig):
        return "unsigned request"
    try:
        ts_value = int(ts)
    except ValueError:
        return "bad timestamp"
    now = time.time() if now is None else now
    if abs(now - ts_value) > tolerance:
        return "stale request"
    if len(nonce) > 128:
        return "bad nonce"
    expected = signature(secret, ts, nonce, method, path, body)
    if not hmac.compare_digest(expected, sig):
        return "bad signature"
    return None
