"""The agent secret of a node: shown once at creation, stored only as a SHA-256 hash.

The panel must sign its requests to the agent, so it needs the secret again: it re-derives it
as HMAC(SECRET_KEY, node id + a per-node salt). A copy of the database alone holds no secret;
rotating the salt (``node_rotate_secret``) issues a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets

from django.conf import settings


def new_salt() -> str:
    return _secrets.token_hex(16)


def derive(node) -> str:
    if not node.secret_salt:
        raise ValueError(f"node {node.pk} has no agent secret")
    message = f"mpanel-node-agent:{node.pk}:{node.secret_salt}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
