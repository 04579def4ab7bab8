"""The OpenAPI schema of every view, documented the same way without decorating each view.

drf-spectacular describes the success answer from the serializers; this AutoSchema (through its
subclass ``apps.tenancy.schema.AutoSchema``, the ``DEFAULT_SCHEMA_CLASS``) adds what every operation
of ours also does, read from the view's own attributes so a module written later gets it without
editing anything here:

- a ``summary`` when the view gave none (from the action and the model, or the view's docstring);
- the error answers of docs/api.md that can happen on that operation: 400 (bad body, query or
  ``X-Tenant-ID``), 401 (no or bad credentials), 403 (role too low), 404 (unknown or another
  tenant's object, page out of range), 409 (state conflict, ``Idempotency-Key`` in flight), 413
  (a body over the size limit, on every operation that takes one), 429 (throttled views), with the
  error body's shape;
- the ``X-Tenant-ID`` header on tenant-scoped operations and ``Idempotency-Key`` on the POSTs that honour it
  (every viewset's).

The tests (tests/platform/test_schema.py) validate the result with openapi-spec-validator and assert that
every operation has a summary and its error answers; schemathesis checks the answers against it.
"""

from __future__ import annotations

import math
import re

from django.utils.text import capfirst
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent, build_parameter_type
from rest_framework import permissions
from rest_framework.fields import DecimalField

from .api import ApiViewSetMixin
from .serializers import DECIMAL, json_types

ERROR_SCHEMA = {
    "type": "object",
    "description": "An error: `detail` says what went wrong and `code` names it; a domain error about "
    "one field answers `{field: [message]}` instead.",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "additionalProperties": True,
}
VALIDATION_ERROR_SCHEMA = {
    "description": "Invalid input: `{field: [messages]}` (`non_field_errors` for the whole input), "
    "`{detail, code}`, or a list of messages.",
    "oneOf": [
        {"type": "object", "additionalProperties": True},
        {"type": "array", "items": {"type": "string"}},
    ],
}
ERROR_DESCRIPTIONS = {
    "400": "Invalid input (body, query parameters or X-Tenant-ID)",
    "401": "No credentials, or a session or token that is unknown, expired or revoked",
    "403": "Authenticated, but the role in this tenant is too low for this action",
    "404": "No such object in this tenant (another tenant's objects are not found either)",
    "409": "The object's state forbids this change, or the same Idempotency-Key is still running",
    "413": "The request body is larger than the limit (MPANEL_MAX_BODY_BYTES)",
    "429": "Too many requests: throttled or locked out (see Retry-After)",
}
ACTION_VERBS = {
    "list": "List {plural}",
    "retrieve": "Show {a} {name}",
    "create": "Create {a} {name}",
    "update": "Replace {a} {name}",
    "partial_update": "Update {a} {name}",
    "destroy": "Delete {a} {name}",
}
# Views of dj-rest-auth, whose docstrings are not summaries.
VIEW_SUMMARIES = {
    "UserDetailsView": {"GET": "Show my account", "PUT": "Replace my account", "PATCH": "Update my account"},
    "PasswordChangeView": {"POST": "Change my password"},
    "PasswordResetView": {"POST": "Email me a password reset link"},
    "PasswordResetConfirmView": {"POST": "Set a new password from a reset link"},
    "VerifyEmailView": {"POST": "Confirm my email address with the key sent to it"},
}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
BODY_METHODS = {"POST", "PUT", "PATCH"}
FIELD_META = {"nullable", "default", "description", "title", "readOnly", "writeOnly", "deprecated", "example"}


class AutoSchema(SpectacularAutoSchema):
    # --- summary -----------------------------------------------------------------------------
    def get_summary(self):
        summary = super().get_summary()
        if summary:
            return summary
        for klass in type(self.view).__mro__:
            if self.method in VIEW_SUMMARIES.get(klass.__name__, {}):
                return VIEW_SUMMARIES[klass.__name__][self.method]
        action = getattr(self.view, "action", None)
        name, plural = self._names()
        if action in ACTION_VERBS and name:
            article = "an" if name[0].lower() in "aeiou" else "a"
            return ACTION_VERBS[action].format(name=name, plural=plural, a=article)
        if action and name:
            return f"{capfirst(action.replace('_', ' '))} ({name})"
        doc = (type(self.view).__doc__ or "").strip()
        if doc:
            first = re.split(r"(?<=\.)\s|\n\s*\n", doc, maxsplit=1)[0]
            return " ".join(first.split()).rstrip(".")
        label = re.sub(r"(API)?View(Set)?$", "", type(self.view).__name__)
        return capfirst(re.sub(r"(?<!^)(?=[A-Z])", " ", label).lower()) or f"{self.method} {self.path}"

    # --- fields ------------------------------------------------------------------------------
    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # A decimal is answered as a string and taken as a string or an integer: what the strict
        # serializers accept (apps.common.serializers.DECIMAL). Fields declaring other json_types
        # (a node's vCPUs) document themselves.
        if direction == "request" and isinstance(field, DecimalField) and json_types(field) == DECIMAL:
            integer: dict = {"type": "integer"}
            if field.min_value is not None:
                integer["minimum"] = math.ceil(field.min_value)
            if field.max_value is not None:
                integer["maximum"] = math.floor(field.max_value)
            elif field.max_digits is not None:
                whole = 10 ** (field.max_digits - (field.decimal_places or 0)) - 1
                integer.update(minimum=max(integer.get("minimum", -whole), -whole), maximum=whole)
            # The field's own facts (nullable, default, description, ...) describe the whole value.
            outer = {key: schema.pop(key) for key in list(schema) if key in FIELD_META}
            return {"oneOf": [schema, integer], **outer}
        return schema

    def _names(self) -> tuple[str | None, str | None]:
        model = getattr(getattr(self.view, "queryset", None), "model", None)
        if model is None:
            serializer_class = getattr(self.view, "serializer_class", None)
            model = getattr(getattr(serializer_class, "Meta", None), "model", None)
        if model is None:
            return None, None
        name, plural = str(model._meta.verbose_name), str(model._meta.verbose_name_plural)
        if plural == f"{name}s":  # Django's default plural: fix the common English endings
            if name.endswith(("s", "x", "sh", "ch")):
                plural = f"{name}es"
            elif name.endswith("y") and name[-2:-1] not in "aeiou":
                plural = f"{name[:-1]}ies"
        return name, plural

    # --- who may call it ---------------------------------------------------------------------
    def _is_public(self) -> bool:
        return any(
            isinstance(p, type) and issubclass(p, permissions.AllowAny)
            for p in getattr(self.view, "permission_classes", [])
        )

    def _authenticates(self) -> bool:
        return bool(getattr(self.view, "authentication_classes", None))

    def _is_tenant_scoped(self) -> bool:
        """Whether the operation acts in a tenant (documents ``X-Tenant-ID``). The ground floor knows
        no tenants: ``apps.tenancy.schema.AutoSchema``, the class the settings name, answers."""
        return False

    def _is_throttled(self) -> bool:
        return bool(self.view.get_throttles())

    # --- parameters --------------------------------------------------------------------------
    def _get_filter_parameters(self):
        # django-filter ignores an empty value (`?status=` is no filter): say so.
        parameters = super()._get_filter_parameters()
        for parameter in parameters:
            if parameter.get("in") == "query":
                parameter["allowEmptyValue"] = True
        return parameters

    def _get_parameters(self):
        parameters = super()._get_parameters()
        names = {(p["in"], p["name"].lower()) for p in parameters}
        if (
            self._is_tenant_scoped()
            and getattr(self.view, "tenant_url_kwarg", None) is None
            and ("header", "x-tenant-id") not in names
        ):
            parameters.append(
                build_parameter_type(
                    name="X-Tenant-ID",
                    schema={"type": "string", "format": "uuid"},
                    location="header",
                    description="The tenant to act in; optional when the user belongs to one tenant "
                    "or the token is bound to one.",
                )
            )
        # Only where it is honoured (ApiViewSetMixin claims the key): logout or a password change
        # would silently ignore it, and an over-long key there would be "accepted".
        if (
            self.method == "POST"
            and isinstance(self.view, ApiViewSetMixin)
            and not self._is_public()
            and ("header", "idempotency-key") not in names
        ):
            parameters.append(
                build_parameter_type(
                    name="Idempotency-Key",
                    schema={"type": "string", "maxLength": 255},
                    location="header",
                    description="A repeat with the same key answers the first response again.",
                )
            )
        return parameters

    # --- responses ---------------------------------------------------------------------------
    def _get_paginator(self):
        # Only `list` pages (every paginate_queryset call of ours is in a list); a custom
        # collection action (`GET checks/`) answers a plain array.
        if getattr(self.view, "action", "list") != "list":
            return None
        return super()._get_paginator()

    def _error_codes(self) -> list[str]:
        public = self._is_public()
        has_input = bool(
            self.method in {"POST", "PUT", "PATCH"}
            or "{" in self.path
            or self.get_override_parameters()
            or self._get_filter_parameters()
            or self._get_pagination_parameters()
        )
        codes = []
        if not public or has_input:
            codes += ["400", "404"]  # bad input; an unknown object, tenant or page
        if self._authenticates():
            codes.append("401")
        if not public:
            codes.append("403")
        if self.method in UNSAFE:
            codes.append("409")
        if self.method in BODY_METHODS:
            codes.append("413")  # every body goes through apps.common.parsers (request.body too)
        if self._is_throttled():
            codes.append("429")
        return codes

    def _error_ref(self, name: str, schema: dict) -> dict:
        component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema)
        self.registry.register_on_missing(component)
        return component.ref

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = set(self._error_codes()) | {c for c in responses if c >= "400"}
        for code in sorted(codes):
            if responses.get(code, {}).get("content"):
                continue
            schema = (
                self._error_ref("ValidationError", VALIDATION_ERROR_SCHEMA)
                if code == "400"
                else self._error_ref("Error", ERROR_SCHEMA)
            )
            description = responses.get(code, {}).get("description") or ERROR_DESCRIPTIONS.get(code, "")
            responses[code] = {"content": {"application/json": {"schema": schema}}, "description": description}
        return responses
