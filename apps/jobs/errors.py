"""What a tenant may read of a failure, and what only operators may.

The convention for job handlers (and anything else that stores an error a tenant reads):

- An error whose message is written for the tenant is raised as a *tenant-safe* class:
  ``TenantSafeError`` (``PermanentError`` is one), ``apps.common.exceptions.DomainError`` (the
  API's own errors), or a class made safe with ``register_safe_error`` (``NodeError`` is one:
  the node's messages are written for people). Its ``message`` is shown.
- Anything else (a ``KeyError``, a driver's traceback, a database's message naming another
  tenant's server) is an internal error: the tenant reads "Internal error (reference …)" and the
  operator finds the full text under that reference in the Django admin (the job's
  ``error_detail`` and its attempts' ``detail``) and in the logs.
- Whatever the class, the stored text goes through ``redact``: tracebacks become the generic
  message, absolute paths, URLs and IP addresses are replaced. ``TenantErrorField`` applies it to
  every write of a tenant-visible error column (``save()`` and ``QuerySet.update()`` alike), so a
  handler that forgets the convention still leaks nothing.

The reference of a failure inside a job is ``<job id>#<attempt>`` (``error_reference``, set by
the job runner), so the tenant's message, the job's detail and the log line name the same thing.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
import re
import secrets
from collections.abc import Iterator

from django.db import models

from apps.common.crypto import UndecryptableSecret
from apps.common.exceptions import DomainError
from apps.common.registry import Registry

log = logging.getLogger(__name__)

MAX_TENANT_ERROR = 2000


class TenantSafeError(Exception):
    """A failure whose ``message`` is written for the tenant. ``detail`` is for operators only."""

    def __init__(self, message: str, *, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.detail = detail


# The exception classes whose ``message`` (or ``str()``) is written for tenants, by their dotted path.
SAFE_ERRORS: Registry[type[BaseException]] = Registry("tenant-safe error")


def register_safe_error(cls: type[BaseException]) -> type[BaseException]:
    """Declare that ``cls``'s ``message`` (or ``str()``) is written for tenants: ``@register_safe_error``
    on the class (the same as ``@SAFE_ERRORS.register()``)."""
    return SAFE_ERRORS.register()(cls)


register_safe_error(TenantSafeError)
# Every sealed secret's refusal says what the tenant's admin must do (enter it again, rotate it).
register_safe_error(UndecryptableSecret)
register_safe_error(DomainError)


def is_safe_error(exc: BaseException) -> bool:
    return isinstance(exc, tuple(SAFE_ERRORS))


# --- references -------------------------------------------------------------------------------------

_reference: contextvars.ContextVar[str | None] = contextvars.ContextVar("mpanel_error_reference", default=None)


@contextlib.contextmanager
def error_reference(reference: str) -> Iterator[str]:
    """Every generic message made inside names ``reference`` (the job runner: ``<job id>#<attempt>``)."""
    token = _reference.set(reference)
    try:
        yield reference
    finally:
        _reference.reset(token)


def current_reference() -> str:
    """The reference in force, or a new random one (then logged by the caller with the detail)."""
    return _reference.get() or secrets.token_hex(6)


def generic_message(reference: str | None) -> str:
    where = f" (reference {reference})" if reference else ""
    return f"Internal error{where}. The platform's operators have the details."


# --- redaction --------------------------------------------------------------------------------------

_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]*\", line \d+|\bline \d+, in \w")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>)\]]+")
# An absolute path: "/" then a name, not inside a word, a relative path or a fraction ("a/b", "2/3").
_PATH = re.compile(r"(?<![\w.~/-])/[\w.@+-]+(?:/[\w.@+-]*)*")
# Candidates for addresses; ipaddress decides (so "12:30:45" or a version "1.2.3" stay).
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?!\w|\.\d)")
_IPV6 = re.compile(r"\[?[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?\]?(?::\d{1,5})?")


def _is_ip(candidate: str) -> bool:
    text = candidate
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1 and "." in text:  # v4 with a port
        text = text.split(":", 1)[0]
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        # "[::1]:8700" without brackets is ambiguous; try without a trailing ":port".
        head, _, tail = text.rpartition(":")
        if not (head and tail.isdigit()):
            return False
        try:
            ipaddress.ip_address(head)
        except ValueError:
            return False
    return True


def _redact_ips(text: str) -> str:
    text = _IPV6.sub(lambda m: "[address]" if m.group(0).count(":") >= 2 and _is_ip(m.group(0)) else m.group(0), text)
    return _IPV4.sub(lambda m: "[address]" if _is_ip(m.group(0)) else m.group(0), text)


def redact(text: str, *, stored: bool = False) -> str:
    """``text`` as a tenant may read it: a traceback becomes the generic message (logged under its
    reference, unless ``stored``: read back from the database, logged when it was written); URLs,
    absolute paths and IP addresses are replaced."""
    if not text:
        return text or ""
    if _TRACEBACK.search(text):
        if stored:
            return generic_message(None)
        reference = current_reference()
        log.error("an error with a traceback was about to reach a tenant (reference %s):\n%s", reference, text)
        return generic_message(reference)
    # A URL's trailing punctuation is the sentence's ("at http://h:1: refused").
    text = _URL.sub(lambda m: "[address]" + m.group(0)[len(m.group(0).rstrip(".,:;")) :], text)
    text = _redact_ips(text)
    text = _PATH.sub("[path]", text)
    return text[:MAX_TENANT_ERROR]


def tenant_message(exc: BaseException) -> str:
    """What the tenant reads about ``exc`` (the convention above)."""
    if is_safe_error(exc):
        message = getattr(exc, "message", None) or str(exc)
        return redact(str(message)) or generic_message(current_reference())
    reference = current_reference()
    log.error("internal error (reference %s): %s: %s", reference, type(exc).__name__, exc, exc_info=exc)
    return generic_message(reference)


class TenantErrorField(models.TextField):
    """A TextField for an error tenants read: every value written (``save()``, ``update()``) and read
    back is redacted. The database column is a plain ``text``; ``deconstruct`` says so, so swapping
    a ``TextField`` for this needs no migration."""

    def get_db_prep_save(self, value, connection):
        if isinstance(value, str):
            value = redact(value)
        return super().get_db_prep_save(value, connection)

    def from_db_value(self, value, expression, connection):
        # Rows written before the rule (or by raw SQL) are redacted on the way out too.
        return redact(value, stored=True) if isinstance(value, str) else value

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.TextField", args, kwargs
