"""Signed, time-limited requests between the panel and a node agent.

Headers: ``X-Mpanel-Timestamp`` (unix seconds), ``X-Mpanel-Nonce`` (random, single use) and
``X-Mpanel-Signature`` = hex HMAC-SHA256(secret, "<ts>.<nonce>.<METHOD>.<path>.<sha256(body)>").
The agent refuses a missing or wrong signature, a timestamp outside the tolerance and a nonce
seen before within it (a replay). Nonces live in memory, so a restarted agent would not know the
ones it saw before; it therefore also refuses requests signed before the second it started.

A secret rotates without downtime: while both the old and the new secret are valid (the panel's
grace period) the panel signs with both, ``X-Mpanel-Signature: <new>,<old>``, and the request is
authentic when one of them is made with the secret the receiver holds. The agent re-reads its
secret file when the file changes (``SecretFile``), so installing the new secret needs no restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence

TOLERANCE = 300  # seconds
MAX_SIGNATURES = 3  # a request carries one signature per secret the sender holds (two while rotating)
MIN_SECRET = 32
log = logging.getLogger("mpanel.agent")


def signature(secret: str, ts: str, nonce: str, method: str, path: str, body: bytes) -> str:
    message = f"{ts}.{nonce}.{method.upper()}.{path}.{hashlib.sha256(body).hexdigest()}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str | Sequence[str], method: str, path: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """``secret``: one, or several (each signs; the receiver needs to hold one of them)."""
    ts = str(int(now if now is not None else time.time()))
    nonce = secrets.token_hex(16)
    keys = [secret] if isinstance(secret, str) else list(secret)
    if not 1 <= len(keys) <= MAX_SIGNATURES:
        raise ValueError(f"sign with 1 to {MAX_SIGNATURES} secrets")
    return {
        "X-Mpanel-Timestamp": ts,
        "X-Mpanel-Nonce": nonce,
        "X-Mpanel-Signature": ",".join(signature(key, ts, nonce, method, path, body) for key in keys),
    }


class SecretFile:
    """The agent's secret, read from its file again whenever the file changes (one stat per call).
    A file changed to something that is not a secret is ignored (logged): the last good one stays."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._stamp: tuple | None = None
        self._secret = ""
        self._lock = threading.Lock()
        if not self():
            raise ValueError(f"the secret file must hold the node's secret (at least {MIN_SECRET} characters)")

    def __call__(self) -> str:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            return self._secret
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    with open(self.path) as fh:
                        secret = fh.read().strip()
                except OSError:
                    return self._secret
                if len(secret) >= MIN_SECRET:
                    if self._secret and secret != self._secret:
                        log.info("the agent secret changed: requests are now checked with the new one")
                    self._secret = secret
                else:
                    log.warning("ignored %s: it does not hold a secret of %s+ characters", self.path, MIN_SECRET)
            return self._secret


class Verifier:
    """Checks signatures and remembers nonces for the tolerance window (thread-safe)."""

    def __init__(self, secret: str | Callable[[], str], tolerance: int = TOLERANCE):
        self.secret = secret if callable(secret) else (lambda: secret)
        self.tolerance = tolerance
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self.started = int(time.time())

    def verify(self, headers, method: str, path: str, body: bytes) -> str | None:
        """None when the request is authentic and fresh, else the reason it is refused."""
        refused = check(self.secret(), headers, method, path, body, tolerance=self.tolerance)
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


def check(secret: str | Sequence[str], headers, method: str, path: str, body: bytes, *,
          tolerance: int = TOLERANCE, now: float | None = None) -> str | None:  # fmt: skip
    """The stateless part of a verification: signed, fresh, well-formed. The caller keeps the nonces
    (the agent in memory; the panel, which runs in several processes, in its database).
    ``secret``: the one the receiver holds, or several it accepts (the panel during a rotation)."""
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
    given = sig.split(",")
    if len(given) > MAX_SIGNATURES:
        return "bad signature"
    keys = [secret] if isinstance(secret, str) else list(secret)
    expected = [signature(key, ts, nonce, method, path, body) for key in keys if key]
    # Every pair is compared (no early exit): the time taken says nothing about which one matched.
    matched = [hmac.compare_digest(e.encode(), g.strip().encode(errors="replace")) for e in expected for g in given]
    if not any(matched):
        return "bad signature"
    return None
