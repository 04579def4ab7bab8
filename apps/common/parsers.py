"""The one JSON reader of every request body: bounded in size and nesting, finite numbers only.

Python's ``json`` recurses once per level, so ``[`` x 100,000 raised RecursionError (a 500) in
DRF's parser, and a body that parsed but was 900 levels deep crashed later in whatever walked it
(serializers, the JSON column, audit snapshots). ``1e309`` parses to ``inf`` and ``NaN`` to a
float that compares false with everything. So, before any of that:

- a body larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django's own limit, which ``request.body``
  already enforces) is a 413;
- nesting deeper than ``MPANEL_JSON_MAX_DEPTH`` is a 400, found by a linear scan that never recurses;
- ``NaN``, ``Infinity`` and numbers that overflow a float are a 400.

DRF uses :class:`JSONParser` for every view (``DEFAULT_PARSER_CLASSES``); views that must read the
raw body themselves (signed webhooks, the metrics ingest) call :func:`loads` after checking the
signature over the raw bytes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.conf import settings
from django.http import QueryDict
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError

# A JSON string (escapes included), unrolled so the regex engine does not backtrack per character.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


class InvalidJSON(ParseError):
    """A 400 (``{"detail", "code": "parse_error"}``), as DRF answers malformed JSON."""


def max_body_bytes(view=None) -> int:
    """Django's limit, or a view's own ``max_body_bytes`` (the file editor takes whole files)."""
    return getattr(view, "max_body_bytes", None) or settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def max_depth() -> int:
    return settings.MPANEL_JSON_MAX_DEPTH


def too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"The request body is larger than {limit} bytes.")


def read_bounded(stream, limit: int) -> bytes:
    """At most ``limit`` bytes from ``stream``; BodyTooLarge past it (nothing more is read)."""
    if stream is None:
        return b""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    return data


def nesting_depth_exceeds(text: str, limit: int) -> bool:
    """Whether arrays/objects in ``text`` nest deeper than ``limit`` (brackets inside strings do
    not count). Linear and without recursion, so it is safe on any input."""
    if text.count("[") + text.count("{") <= limit:
        return False  # cannot nest deeper than there are openings: the common case, no scan
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def loads(raw: bytes | str, *, limit: int | None = None) -> Any:
    """Parse a request body under the rules above; InvalidJSON (400) or BodyTooLarge (413)."""
    limit = limit or max_body_bytes()
    if len(raw) > limit:
        raise too_large(limit)
    if isinstance(raw, bytes | bytearray):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJSON("The body is not UTF-8.") from exc
    else:
        text = raw
    depth = max_depth()
    if nesting_depth_exceeds(text, depth):
        raise InvalidJSON(f"JSON nested deeper than {depth} levels.")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:  # a lower interpreter limit than the depth bound: still a 400
        raise InvalidJSON(f"JSON nested deeper than {depth} levels.") from exc
    except ValueError as exc:  # JSONDecodeError, the two above, an integer of over 4300 digits
        raise InvalidJSON(f"JSON parse error - {exc}") from exc


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        limit = max_body_bytes(parser_context.get("view"))
        raw = read_bounded(stream, limit)
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise InvalidJSON(f"The body is not {encoding}.") from exc
        return loads(text, limit=limit)


class FormParser(parsers.FormParser):
    """DRF's, with the same size bound (Django's QueryDict bounds the number of fields)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        return QueryDict(read_bounded(stream, max_body_bytes(parser_context.get("view"))), encoding=encoding)
