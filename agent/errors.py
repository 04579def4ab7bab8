"""The agent's error type, at the bottom of ``agent/`` so every module may raise it.

An ``AgentError`` is what the node answers when an operation fails: its ``message`` is written for
people (the panel shows it, redacted for tenants), ``permanent`` says trying again will not help.
The HTTP service answers 422 for a permanent one and 503 for the others (``agent.server``).
"""

from __future__ import annotations


class AgentError(Exception):
    """A node-side failure. ``permanent`` ones cannot be fixed by trying again (bad spec)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
