"""The rules every value a node daemon reads must meet, in one place for both sides.

The panel's API calls these functions before it stores anything (a refusal is a 400 naming the
field), and the node agent calls the very same functions again before it writes a daemon's file or
calls its API (a refusal fails only the object that holds the value). Standard library only and no
import from ``apps``/``mpanel``, like the rest of the agent.

One module per artifact: ``names`` (host and domain names), ``mail`` (Postfix maps and Dovecot's
passwd-file), ``sieve`` (a mailbox's autoresponder, its Sieve ``vacation`` script), ``dns`` (zones,
records, SOA), ``web`` (nginx vhost values and PHP-FPM pools).
Each function returns the value as the daemon will get it, or raises ``Invalid``.
"""

from __future__ import annotations

import re


class Invalid(ValueError):
    """A value a daemon must never read. ``field`` names what the API calls it."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


# C0 controls, DEL and the C1 controls; also the Unicode line and paragraph separators, which some
# parsers treat as line ends.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def text(value, *, field: str, what: str, max_length: int = 253) -> str:
    """A string of at most ``max_length`` characters without any control character."""
    if not isinstance(value, str):
        raise Invalid(f"{what} must be text.", field=field)
    if len(value) > max_length:
        raise Invalid(f"{what} is longer than {max_length} characters.", field=field)
    if CONTROL_RE.search(value):
        raise Invalid(f"{what} cannot hold control characters or line breaks: {value!r}.", field=field)
    return value
