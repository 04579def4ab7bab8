"""The one base every mPanel API view builds on: idempotent POSTs and scoped rendering."""

from __future__ import annotations

from contextlib import ExitStack

from rest_framework import viewsets

from . import idempotency


class ApiViewSetMixin:
    """Shared by tenant-scoped and account-level viewsets.

    - ``Idempotency-Key`` on POST replays the first answer (claimed in ``initial``).
    - The response is rendered before the request's scope closes, so nothing lazily reads
      tenant data outside it (the browsable API renders forms that query).
    """

    # Fields of a response that carry a secret shown once (a new API token): the stored copy for
    # Idempotency-Key replays has them blanked, so no secret is kept in the database.
    idempotency_secret_fields: tuple[str, ...] = ()

    def tenant_for_idempotency(self, request):
        return None

    def dispatch(self, request, *args, **kwargs):
        self._exit_stack = ExitStack()
        self._idempotency_record = None
        with self._exit_stack:
            response = super().dispatch(request, *args, **kwargs)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response = response.render()
            return response

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self._idempotency_record = idempotency.claim(request, self.tenant_for_idempotency(request))

    def handle_exception(self, exc):
        if isinstance(exc, idempotency.Replay):
            return exc.response
        idempotency.release(getattr(self, "_idempotency_record", None))
        self._idempotency_record = None
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        record = getattr(self, "_idempotency_record", None)
        if record is not None:
            idempotency.complete(record, response, secret_fields=self.idempotency_secret_fields)
            self._idempotency_record = None
        return response


class AccountViewSet(ApiViewSetMixin, viewsets.GenericViewSet):
    """Views about the signed-in user, not about one tenant (e.g. the list of my tenants)."""
