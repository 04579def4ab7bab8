"""The agent secret of a node: shown once at creation (or rotation), stored only as a SHA-256 hash.

The panel must sign its requests to the agent, so it needs the secret again: it re-derives it
as HMAC(SECRET_KEY, node id + a per-node salt). A copy of the database alone holds no secret;
rotating the salt (``node_rotate_secret``) issues a new one. The previous salt stays valid for a
grace period (``secret_previous_until``) so the agent can be given the new secret without a failed
request: meanwhile the panel signs with both and accepts either from the node.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets

from django.conf import settings
from django.utils import timezone


def new_salt() -> str:
    return _secrets.token_hex(16)


def derive(node, salt: str | None = None) -> str:
    salt = node.secret_salt if salt is None else salt
    if not salt:
        raise ValueError(f"node {node.pk} has no agent secret")
    message = f"mpanel-node-agent:{node.pk}:{salt}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def in_grace(node, now=None) -> bool:
    until = node.secret_previous_until
    return bool(node.secret_salt_previous and until and until > (now or timezone.now()))


def valid_secrets(node, now=None) -> list[str]:
    """The secrets the node may hold now: the current one, and the previous one during the grace.
    The panel signs with all of them and accepts a request signed with any."""
    found = [derive(node)]
    if in_grace(node, now):
        found.append(derive(node, node.secret_salt_previous))
    return found
