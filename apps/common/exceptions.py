"""Domain errors and their single mapping to HTTP (docs/api.md)."""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from agent.validate import Invalid

from .parsers import too_large


class DomainError(Exception):
    """A rule of the business was broken; subclasses choose the HTTP status."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class InvalidInput(DomainError):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"


class Conflict(DomainError):
    """An illegal state change (pay a void invoice, cancel a running job)."""

    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Forbidden(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


logger = logging.getLogger(__name__)


def _is_check_violation(exc: IntegrityError) -> bool:
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) == "23514" or getattr(cause, "pgcode", None) == "23514":  # PostgreSQL
        return True
    return "CHECK constraint failed" in str(exc)  # SQLite


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        # request.body past DATA_UPLOAD_MAX_MEMORY_SIZE: the same 413 as the parsers' (apps/common/parsers.py).
        exc = too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if isinstance(exc, DataError):
        # A value that passed validation but that PostgreSQL refuses (out of range, malformed):
        # the input's fault, and the statement was rolled back with its transaction.
        logger.warning("database refused a value: %s", exc)
        return Response(
            {"detail": "A value is out of the range the database accepts.", "code": "invalid"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, ProtectedError | RestrictedError):
        # Deleting a row that others still point at: say what holds it, change nothing. (Django's
        # ProtectedError and RestrictedError are IntegrityErrors: this comes first.)
        holders = getattr(exc, "protected_objects", None) or getattr(exc, "restricted_objects", ())
        held_by = sorted({str(obj._meta.verbose_name_plural) for obj in holders if hasattr(obj, "_meta")})
        what = ", ".join(held_by) or "other objects"
        return Response(
            {"detail": f"It is still used by {what}: remove or move those first.", "code": "in_use"},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, IntegrityError):
        # A database constraint the services did not foresee held the line (the statement was rolled
        # back with its transaction): a CHECK is a value out of range, anything else a clash with
        # stored data. Services check first with clear messages; this is the net under them.
        logger.warning("database constraint refused a write: %s", exc)
        if _is_check_violation(exc):
            return Response(
                {"detail": "A value is out of the range the database accepts.", "code": "invalid"},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(
            {"detail": "This conflicts with stored data.", "code": "conflict"}, status=status.HTTP_409_CONFLICT
        )
    if isinstance(exc, OperationalError | InterfaceError):
        # The database connection was lost (restart, failover, terminated backend): the open
        # transaction died with it, so nothing was half-written. Django drops the broken
        # connection at the end of the request; the client may retry.
        logger.error("database unavailable: %s", exc)
        return Response(
            {"detail": "The database is unavailable, retry shortly.", "code": "unavailable"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, Invalid):
        # A node rule (agent/validate) a caller did not wrap in apps.common.rules: still bad input.
        exc = InvalidInput(exc.message, field=exc.field)
    if isinstance(exc, DomainError):
        data = {exc.field: [exc.message]} if exc.field else {"detail": exc.message, "code": exc.code}
        return Response(data, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            exc = drf_exceptions.ValidationError(exc.message_dict)
        else:
            exc = drf_exceptions.ValidationError({"non_field_errors": exc.messages})
    elif isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    return drf_exception_handler(exc, context)
