"""The base of every tenant-scoped API (docs/architecture.md; PostHog's TeamAndOrgViewSetMixin).

The tenant and role are resolved once, right after authentication, and the tenant scope is
held for the whole request. Subclasses declare ``required_roles`` and may narrow the queryset
with ``scope_queryset``; they may not override ``get_queryset`` or ``get_permissions``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from django.db import models
from django.db.models.query import MAX_GET_RESULTS
from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.generics import GenericAPIView, get_object_or_404
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from apps.common import context
from apps.common.api import ApiViewSetMixin
from apps.common.filters import FilterBackend
from apps.common.prepared import PreparedQuery, as_uuid

from . import resolution
from .filters import ScopedFilterBackend
from .permissions import HasTenantRole
from .roles import Role
from .scoping import UnscopedQuerySet, all_tenants, tenant_scope


class TenantScopedViewSet(ApiViewSetMixin, viewsets.GenericViewSet):
    permission_classes = [HasTenantRole]
    required_roles: dict = {}
    # Views mounted under /tenants/{id}/ name their tenant in the URL instead of the header.
    tenant_url_kwarg: str | None = None
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    # Platform operators (is_staff) see every tenant here when they name none.
    operators_see_all = False
    # What operators may do platform-wide (without naming a tenant); anything else needs X-Tenant-ID.
    operator_actions: frozenset[str] = frozenset({"list", "retrieve"})
    # DRF's default list less TRACE; narrower lists are computed (ResourceViewSet) or declared.
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for forbidden in ("get_queryset", "get_permissions"):
            if forbidden in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} must not override {forbidden}(); use scope_queryset() / required_roles."
                )

    def initial(self, request, *args, **kwargs):
        self.perform_authentication(request)
        url_tenant = kwargs.get(self.tenant_url_kwarg) if self.tenant_url_kwarg else None
        request.operator = False
        if self.operators_see_all and resolution.wants_platform_view(request, url_tenant):
            request.operator = True
            request.tenant = None
            request.tenant_role = None
            self._exit_stack.enter_context(all_tenants())
            # Whatever this request audits is an operator's act (AuditEvent.via), with its object's tenant.
            context.current().via = "operator"
        else:
            ctx = resolution.resolve(request, url_tenant_id=url_tenant)
            request.tenant = ctx.tenant
            request.tenant_role = ctx.role
            for check in resolution.REQUEST_CHECKS:
                check(request, ctx)
            if ctx.tenant is not None:
                self._exit_stack.enter_context(tenant_scope(ctx.tenant))
        super().initial(request, *args, **kwargs)

    def tenant_for_idempotency(self, request):
        return getattr(request, "tenant", None)

    def get_object(self):
        obj = self._prepared_object()
        self._object = super().get_object() if obj is None else obj
        return self._object

    def _prepared_object(self) -> Any:
        """The addressed row by the read compiled once per viewset class (``_detail_read``) when this request
        reads exactly what the general path reads (a tenant's view, no query parameter, a UUID key); None:
        take the general path. The same 404 for a row not found (another tenant's)."""
        read = _detail_read(type(self))
        request = self.request
        tenant = getattr(request, "tenant", None)
        if read is None or tenant is None or getattr(request, "operator", False) or request.query_params:
            return None
        if not all(_inert_without_parameters(backend(), request, self) for backend in self.filter_backends):
            return None
        key = as_uuid(self.kwargs.get(self.lookup_url_kwarg or self.lookup_field))
        if key is None:
            return None
        try:
            rows = read.rows(tenant_id=tenant.pk, pk=key)
        except ValueError:  # a queryset PreparedQuery cannot run (extra() columns): the general path, always
            _DETAIL_READS[type(self)] = None
            return None
        if len(rows) != 1:
            if rows:
                return None  # more than one: the general path says so its own way
            raise Http404(f"No {read.model._meta.object_name} matches the given query.")
        self.check_object_permissions(request, rows[0])
        return rows[0]

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if (
            getattr(request, "operator", False)
            and request.method in ("GET", "HEAD")
            and 200 <= response.status_code < 300
        ):
            self._audit_operator_read(request)
        return response

    def _audit_operator_read(self, request) -> None:
        """An operator reading across tenants is audited like a change (reads of job payloads
        included); mutations are audited by their services, marked via="operator"."""
        from apps.audit import services as audit

        obj = getattr(self, "_object", None)
        model = getattr(self.queryset, "model", None)
        audit.record(
            action="operator.read",
            obj=obj,
            tenant=getattr(obj, "tenant_id", None),
            object_type=model._meta.label_lower if model is not None else "",
            changes={"path": request.path, "query": request.GET.urlencode()[:500]},
        )

    @property
    def tenant(self):
        return self.request.tenant

    @property
    def tenant_role(self) -> Role | None:
        """The caller's role in ``tenant`` (``None`` for an operator's platform-wide view)."""
        role = self.request.tenant_role
        return Role(role) if role else None

    def get_queryset(self):
        assert self.queryset is not None, f"{type(self).__name__} needs a queryset"
        qs = self.queryset
        qs = qs.bound() if isinstance(qs, UnscopedQuerySet) else qs.all()
        if getattr(self.request, "operator", False):
            return self.scope_queryset(qs)
        tenant = getattr(self.request, "tenant", None)
        if tenant is None:
            return qs.none()
        # The scoped manager already filters; this second filter keeps the API safe on its own.
        return self.scope_queryset(qs.filter(tenant=tenant))

    def scope_queryset(self, queryset):
        return queryset

    def ensure_visible(self) -> None:
        """Raise 404 when the addressed object (or a nested route's parent) is not this tenant's."""
        if self.detail:
            queryset = self.filter_queryset(self.get_queryset())
            lookup = self.lookup_url_kwarg or self.lookup_field
            get_object_or_404(queryset, **{self.lookup_field: self.kwargs[lookup]})
        else:
            self.get_queryset()

    def get_permissions(self):
        return [permission() for permission in self.permission_classes]


class TenantModelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantScopedViewSet,
):
    """CRUD whose writes go through ``perform_*`` hooks that subclasses point at services."""


class TenantReadOnlyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    pass


# The standard write routes of a resource, the service hook that backs each, and its HTTP method.
_WRITES: dict[str, tuple[str, str]] = {
    "create": ("create_resource", "post"),
    "update": ("update_resource", "put"),
    "partial_update": ("update_resource", "patch"),
    "destroy": ("destroy_resource", "delete"),
}


class ResourceViewSet(TenantScopedViewSet):
    """The viewset of a resource written through its app's services (docs/architecture.md).

    A subclass declares, and writes nothing else for the standard routes:
    - ``serializer_class``: the output serializer of lists and of every answer;
      ``detail_serializer_class`` for ``retrieve`` when it shows more; ``output_serializers`` for an
      action that answers something else (``{"create": InvitationSerializer}``);
    - ``input_serializers``: the request body of each write action (``"create"``, ``"update"``,
      a custom action's name); ``partial_update`` uses ``"update"``'s with ``partial=True``;
    - the service hooks it supports: ``create_resource(data)``, ``update_resource(obj, data)``,
      ``destroy_resource(obj)``. A route exists only when its hook (or its method) is written: the
      HTTP methods are computed from them and from the custom actions, so an unsupported write is a
      405 like any unknown method, and the OpenAPI schema is generated from the same declarations
      (``summaries`` names the standard routes' summaries there);
    - ``update_methods``: the verbs of an update and whether each reads a partial body (PUT whole,
      PATCH partial); ``{"patch": False}`` is an edit by PATCH alone of a whole body.
    ``destroy_resource`` returning the object answers 202 with it (a job removes it); returning
    ``None`` answers 204 (declare ``destroy_answers_object = False`` for the schema). Custom actions
    answer with ``self.answer(obj, status)`` and read their body with ``self.validated()``.
    """

    detail_serializer_class: ClassVar[type[BaseSerializer] | None] = None
    input_serializers: ClassVar[dict[str, type[BaseSerializer]]] = {}
    output_serializers: ClassVar[dict[str, type[BaseSerializer]]] = {}
    update_methods: ClassVar[dict[str, bool]] = {"put": False, "patch": True}
    # What DELETE answers in the schema: 202 with the object (a job removes it) or 204.
    destroy_answers_object: ClassVar[bool] = True
    # The schema's summary of a standard route ("create", "update", "partial_update", "destroy", …).
    summaries: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "http_method_names" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: the HTTP methods follow the hooks and actions; do not declare them.")
        for action in _WRITES:
            # A standard route exists (the router maps it) only when it is supported.
            if getattr(cls, action, None) is None and cls._supports(action):
                setattr(cls, action, cls._standard_route(action))
        cls.http_method_names = cls._methods()
        if not cls.__dict__.get("__doc__"):
            cls.__doc__ = ""  # the schema would show this base's docstring as the resource's description
        cls._declare_schema()

    @classmethod
    def _standard_route(cls, action: str) -> Callable[..., Response]:
        """The base's ``action`` for ``cls``: a function of its own, since the schema's
        declarations are attached to the function."""
        impl = getattr(ResourceViewSet, f"_route_{action}")

        def route(self, request, *args, **kwargs):
            return impl(self, request, *args, **kwargs)

        route.__name__, route.__qualname__ = action, f"{cls.__qualname__}.{action}"
        route.standard_route = True  # type: ignore[attr-defined]
        return route

    @classmethod
    def _hand_written(cls, action: str) -> bool:
        method = cls.__dict__.get(action)
        return method is not None and not getattr(method, "standard_route", False)

    @classmethod
    def _supports(cls, action: str) -> bool:
        """A standard route is supported when its method is written, or its hook is and (for an
        update) its verb is one of ``update_methods``."""
        if getattr(cls, action, None) is not None:
            return True
        hook, verb = _WRITES[action]
        if action in ("update", "partial_update") and verb not in cls.update_methods:
            return False
        return getattr(cls, hook) is not getattr(ResourceViewSet, hook)

    @classmethod
    def _methods(cls) -> list[str]:
        methods = {"get", "head", "options"}
        for action, (_hook, verb) in _WRITES.items():
            if cls._supports(action):
                methods.add(verb)
        for extra in cls.get_extra_actions():
            methods.update(extra.mapping)
        return [m for m in ("get", "post", "put", "patch", "delete", "head", "options") if m in methods]

    @classmethod
    def _declare_schema(cls) -> None:
        """Request and answer of the standard routes, from the declarations (a method the subclass
        writes itself carries its own ``extend_schema``)."""
        out = cls.serializer_class
        update_in = cls.input_serializers.get("update")
        views = {}
        if cls._supports("create") and not cls._hand_written("create"):
            views["create"] = dict(
                request=cls.input_serializers.get("create"), responses={201: cls.output_serializers.get("create", out)}
            )
        for action in ("update", "partial_update"):
            if cls._supports(action) and not cls._hand_written(action):
                views[action] = dict(request=update_in, responses={200: cls.output_serializers.get(action, out)})
        if cls._supports("destroy") and not cls._hand_written("destroy"):
            answer = {202: cls.output_serializers.get("destroy", out)} if cls.destroy_answers_object else {204: None}
            views["destroy"] = dict(request=None, responses=answer)
        detail = cls.output_serializers.get("retrieve", cls.detail_serializer_class)
        if detail is not None and not cls._hand_written("retrieve"):
            views["retrieve"] = dict(responses={200: detail})
        for action, summary in cls.summaries.items():
            if action in views or action in ("list", "retrieve"):
                views.setdefault(action, {})["summary"] = summary
        if views:
            extend_schema_view(**{action: extend_schema(**kw) for action, kw in views.items()})(cls)

    def initial(self, request, *args, **kwargs):
        # An unsupported write is a 405, after authentication as for any other view: an anonymous
        # caller learns nothing but that it must sign in.
        method = request.method.lower()
        if method not in self.http_method_names or (method != "options" and method not in self.action_map):
            self.perform_authentication(request)
            if not request.user or not request.user.is_authenticated:
                self.permission_denied(request)
            raise exceptions.MethodNotAllowed(request.method)
        super().initial(request, *args, **kwargs)

    # --- the service hooks a subclass writes --------------------------------------------------

    def create_resource(self, data: dict) -> Any:
        raise NotImplementedError

    def update_resource(self, obj: Any, data: dict) -> Any:
        raise NotImplementedError

    def destroy_resource(self, obj: Any) -> Any | None:
        raise NotImplementedError

    # --- one way to read a body and to answer --------------------------------------------------

    def get_serializer_class(self):
        action = "update" if self.action == "partial_update" else self.action
        if action in self.input_serializers:
            return self.input_serializers[action]
        return self.output_serializers.get(self.action) or self._default_output()

    def _default_output(self) -> type[BaseSerializer]:
        if self.action == "retrieve" and self.detail_serializer_class is not None:
            return self.detail_serializer_class
        return self.serializer_class

    def validated(
        self,
        serializer: type[BaseSerializer] | None = None,
        *,
        data: Any = None,
        partial: bool | None = None,
        instance: Any = None,
    ) -> dict:
        """The current action's body, validated by its input serializer (400 with field errors).

        ``serializer`` and ``data`` name another serializer or source (``request.query_params``);
        ``instance`` is the row an update changes (a model serializer's unique checks leave it out)."""
        if partial is None:
            partial = self.action == "partial_update" and self.update_methods.get("patch", True)
        serializer_class = serializer or self.get_serializer_class()
        body = self.request.data if data is None else data
        checked = serializer_class(instance, data=body, partial=partial, context=self.get_serializer_context())
        checked.is_valid(raise_exception=True)
        return checked.validated_data

    def output(
        self,
        obj: Any,
        *,
        many: bool = False,
        serializer: type[BaseSerializer] | None = None,
        context: dict | None = None,
    ) -> Any:
        """``obj`` (or a list, ``many=True``) as the current action answers it: ``serializer``, else
        the action's ``output_serializers`` entry, else ``serializer_class`` (``detail_serializer_class``
        for ``retrieve``). ``context`` adds to the serializer's context (a secret shown once)."""
        serializer_class = serializer or self.output_serializers.get(self.action) or self._default_output()
        full = {**self.get_serializer_context(), **getattr(self, "_answer_context", {}), **(context or {})}
        return serializer_class(obj, many=many, context=full).data

    def answer(
        self,
        obj: Any,
        code: int = status.HTTP_200_OK,
        *,
        many: bool = False,
        serializer: type[BaseSerializer] | None = None,
        context: dict | None = None,
    ) -> Response:
        """The one way an action answers: ``output(...)`` with the status ``code``."""
        return Response(self.output(obj, many=many, serializer=serializer, context=context), status=code)

    def add_answer_context(self, **values: Any) -> None:
        """Add to the context of this request's answer (e.g. a hook's secret, shown once by the
        output serializer): a service hook returns the object and tells the rest here."""
        self._answer_context = {**getattr(self, "_answer_context", {}), **values}

    def current(self, obj: Any) -> Any:
        """``obj`` as this view's queryset reads it now (its annotations and prefetches, and what the
        service or an in-process job changed)."""
        return self.get_queryset().get(pk=obj.pk)

    # --- the standard routes (the writes are set on a subclass that supports them) ----------------

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        if page is None:
            return self.answer(queryset, many=True)
        return self.get_paginated_response(self.output(page, many=True))

    def retrieve(self, request, *args, **kwargs):
        return self.answer(self.get_object())

    def _route_create(self, request, *args, **kwargs):
        return self.answer(self.create_resource(self.validated()), status.HTTP_201_CREATED)

    def _route_update(self, request, *args, **kwargs):
        obj = self.get_object()  # a foreign or unknown object is a 404 before its body is read
        return self.answer(self.update_resource(obj, self.validated(instance=obj)))

    def _route_partial_update(self, request, *args, **kwargs):
        return self._route_update(request, *args, **kwargs)

    def _route_destroy(self, request, *args, **kwargs):
        # ``?force=true``: an ADMIN+ deletes even when a before-delete step (a final backup) fails.
        force = str(request.query_params.get("force", "")).lower() in ("1", "true", "yes")
        if force and self.tenant_role is not None and not self.tenant_role.includes(Role.ADMIN):
            raise exceptions.PermissionDenied("Only an ADMIN or OWNER may force a delete.")
        target = self.get_object()
        context.current().force_delete = force  # read by apps.jobs.lifecycle.before_delete
        obj = self.destroy_resource(target)
        if obj is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return self.answer(obj, status.HTTP_202_ACCEPTED)


# A detail read by key, compiled once per viewset class: its queryset filtered by the tenant and the key, as
# ``get_object`` reads it (the general path's ordering dropped by ``get`` itself, its limit kept).
_DETAIL_READS: dict[type, PreparedQuery | None] = {}


def _detail_read(cls: type[TenantScopedViewSet]) -> PreparedQuery | None:
    """None when the class's reads may differ from request to request in ways the prepared read does not
    follow: a ``scope_queryset`` or ``filter_queryset`` of its own, another filter backend than the
    project's three, prefetches, a key that is not the model's UUID primary key."""
    if cls in _DETAIL_READS:
        return _DETAIL_READS[cls]
    queryset = cls.queryset
    model = getattr(queryset, "model", None)
    read = None
    if (
        model is not None
        and cls.lookup_field == "pk"
        and isinstance(model._meta.pk, models.UUIDField)
        and not queryset._prefetch_related_lookups
        and cls.scope_queryset is TenantScopedViewSet.scope_queryset
        and cls.filter_queryset is GenericAPIView.filter_queryset
        and all(backend in _INERT_BACKENDS for backend in cls.filter_backends)
    ):

        def build(tenant_id: uuid.UUID, pk: uuid.UUID) -> models.QuerySet:
            base = queryset.bound() if isinstance(queryset, UnscopedQuerySet) else queryset.all()
            return base.filter(tenant=tenant_id).filter(pk=pk).order_by()[:MAX_GET_RESULTS]

        read = PreparedQuery(model, build, tenant_id=uuid.UUID, pk=uuid.UUID)
    _DETAIL_READS[cls] = read
    return read


# The filter backends that change nothing of a read without query parameters: search without its word,
# ordering (a read by key is not ordered), and the filter backend when no parameter reaches a filter.
_INERT_BACKENDS = (ScopedFilterBackend, SearchFilter, OrderingFilter)


def _inert_without_parameters(backend: Any, request: Any, view: Any) -> bool:
    return not isinstance(backend, FilterBackend) or backend._nothing_to_filter(request, view)
