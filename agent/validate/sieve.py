"""A mailbox's autoresponder, rendered by the node as a Sieve ``vacation`` script.

The node's rendering escapes quotes, backslashes and a lone "." line itself, so any printable text
is safe; what may not get in are control characters (NUL would end the script), a line break in the
subject (one header line) and text that is not UTF-8 (a lone surrogate from JSON's ``\\udxxx``).
Dates are ISO dates (``date`` objects on the panel's side, ``YYYY-MM-DD`` strings in the node's spec).
"""

from __future__ import annotations

import datetime
import re

from . import Invalid

# Controls other than tab and newline have no business in a reply.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def vacation_subject(value, field: str = "subject") -> str:
    """One header line: runs of whitespace (line breaks included) become one space."""
    subject = " ".join(value.split()) if isinstance(value, str) else ""
    if not subject or CONTROL_RE.search(subject) or not _utf8(subject):
        raise Invalid("A subject of printable characters on one line.", field=field)
    return subject


def vacation_body(value, field: str = "body") -> str:
    """Any printable text; line ends become ``\\n``."""
    body = value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else ""
    if not body.strip() or CONTROL_RE.search(body) or not _utf8(body):
        raise Invalid("A body of printable characters (line breaks and tabs allowed).", field=field)
    return body


def vacation_days(value, field: str = "interval_days") -> int:
    """Pigeonhole's per-sender memory: at most one reply to a sender every 1 to 60 days."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 60:
        raise Invalid("Between 1 and 60 days.", field=field)
    return value


def vacation_date(value, field: str = "start_date"):
    """An open end (``None``), a ``date`` or an ISO date string."""
    if value is None or (isinstance(value, datetime.date) and not isinstance(value, datetime.datetime)):
        return value
    if not isinstance(value, str) or not DATE_RE.match(value):
        raise Invalid("A date as YYYY-MM-DD.", field=field)
    return value


def vacation_end(value, field: str = "end_date", *, start=None):
    """The last day of the replies: never before ``start`` (either end may be open)."""
    value = vacation_date(value, field)
    if start is not None and value is not None and value < start:
        raise Invalid("The end date cannot be before the start date.", field=field)
    return value


def vacation(spec: dict) -> dict:
    """The node's spec of one autoresponder (``subject``, ``body``, ``start``, ``end``, ``days``), as
    the script gets it."""
    start = vacation_date(spec.get("start"), "start")
    return {
        "subject": vacation_subject(spec.get("subject")),
        "body": vacation_body(spec.get("body")),
        "start": start,
        "end": vacation_end(spec.get("end"), "end", start=start),
        "days": vacation_days(spec.get("days"), "days"),
    }
