"""The base of every tenant-scoped API (docs/architecture.md; PostHog's TeamAndOrgViewSetMixin).

The tenant and role are resolved once, right after authentication, and the tenant scope is
held for the whole request. Subclasses declare ``required_roles`` and may narrow the queryset
with ``scope_queryset``; they may not override ``get_queryset`` or ``get_permissions``.
"""

from __future__ import annotations

from rest_framework import mixins, viewsets
from rest_framework.generics import get_object_or_404

from apps.common import context
from apps.common.api import ApiViewSetMixin

from . import resolution
from .permissions import HasTenantRole
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
        self._object = super().get_object()
        return self._object

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
