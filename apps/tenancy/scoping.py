"""Fail-closed tenant scoping on top of django-scopes.

``TenantManager`` is the default manager of every tenant-owned model: with no tenant in
scope, any query raises ``ScopeError``. Code that must see all tenants says so, loudly:
``with all_tenants():`` or ``Model.all_tenants``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from django.db import models
from django.db.models import BooleanField, Expression
from django_scopes import get_scope, scope, scopes_disabled
from django_scopes.exceptions import ScopeError

from apps.common.prepared import PreparedQuery

__all__ = ["ScopeError", "TenantManager", "all_tenants", "current_tenant", "tenant_scope"]


@contextmanager
def tenant_scope(tenant):
    """Everything inside sees only ``tenant``'s rows. A None tenant is refused, never 'everything'."""
    if tenant is None:
        raise ScopeError("tenant_scope() needs a tenant; use all_tenants() to see every tenant.")
    with scope(tenant=tenant):
        yield tenant


@contextmanager
def all_tenants():
    """The explicit escape for operator and system code (admin, sweeper, billing run)."""
    with scopes_disabled():
        yield


def current_tenant():
    s = get_scope()
    if not s.get("_enabled", True):
        return None
    return s.get("tenant")


class NoTenantInScope(Expression):
    """A WHERE condition that refuses to become SQL: it marks a query built with no tenant in
    scope, so that even paths that skip the queryset's methods (``Subquery(qs)``) fail closed."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, model_name: str):
        super().__init__()
        self.model_name = model_name

    def as_sql(self, compiler, connection):
        raise ScopeError(f"{self.model_name} is tenant-owned and no tenant is in scope.")

    def __eq__(self, other):
        return isinstance(other, NoTenantInScope) and other.model_name == self.model_name

    def __hash__(self):
        return hash((NoTenantInScope, self.model_name))


def _is_poison(node) -> bool:
    # filter(expression) stores the expression as the left side of an Exact(expression, True) lookup.
    return isinstance(node, NoTenantInScope) or isinstance(getattr(node, "lhs", None), NoTenantInScope)


def _refuse(self, *args, **kwargs):
    raise ScopeError(
        f"{self.model.__name__} is tenant-owned: query it inside tenant_scope(tenant), "
        "or use all_tenants() / Model.all_tenants in operator and system code."
    )


class UnscopedQuerySet(models.QuerySet):
    """What the manager hands out with no tenant in scope: it may be built, never run.

    Building stays possible so that libraries that only inspect a queryset (django-filter,
    drf-spectacular) work at import time; anything that would send SQL raises ScopeError,
    including use as a subquery of another query.
    """

    _fetch_all = _refuse
    iterator = _refuse
    count = _refuse
    exists = _refuse
    contains = _refuse
    aggregate = _refuse
    update = _refuse
    _update = _refuse
    delete = _refuse
    _raw_delete = _refuse
    bulk_update = _refuse
    in_bulk = _refuse
    explain = _refuse
    raw = _refuse
    resolve_expression = _refuse
    get_or_create = _refuse
    update_or_create = _refuse

    def bound(self) -> models.QuerySet:
        """The same query as a normal queryset, for a caller that adds its own tenant filter
        (a viewset's class-level ``queryset`` is built at import, with no tenant in scope)."""
        query = self.query.chain()
        query.where.children = [c for c in query.where.children if not _is_poison(c)]
        qs = models.QuerySet(model=self.model, query=query, using=self._db, hints=self._hints)
        qs._prefetch_related_lookups = self._prefetch_related_lookups[:]
        return qs


class TenantManager(models.Manager):
    """Filters by the tenant in scope; with none, every query raises (fail-closed)."""

    def get_queryset(self):
        s = get_scope()
        if not s.get("_enabled", True):
            return super().get_queryset()
        tenant = s.get("tenant")
        if tenant is None:
            return UnscopedQuerySet(self.model, using=self._db).filter(NoTenantInScope(self.model.__name__))
        return super().get_queryset().filter(tenant=tenant)


class ScopedPreparedQuery:
    """A ``PreparedQuery`` of a tenant-owned model that reads what its ``objects`` manager would: inside
    ``tenant_scope`` that tenant's rows (the tenant is a value of the compiled statement, not part of its
    text, so one compile serves every tenant), inside ``all_tenants()`` every tenant's, and with no
    tenant in scope nothing: ``ScopeError``, as the manager (fail-closed).

    ``build(**values)`` returns the queryset without the tenant filter (from ``Model.all_tenants``).
    """

    def __init__(self, model: type[models.Model], build: Callable[..., models.QuerySet], **options: Any) -> None:
        self.model = model

        def scoped(tenant_id: uuid.UUID, **values: Any) -> models.QuerySet:
            return build(**values).filter(tenant_id=tenant_id)

        self._scoped = PreparedQuery(model, scoped, tenant_id=uuid.UUID, **options)
        self._unscoped = PreparedQuery(model, build, **options)

    def rows(self, **values: Any) -> list:
        s = get_scope()
        if not s.get("_enabled", True):
            return self._unscoped.rows(**values)
        tenant = s.get("tenant")
        if tenant is None:
            _refuse(self)
        tenant_id = tenant.pk if isinstance(tenant.pk, uuid.UUID) else uuid.UUID(str(tenant.pk))
        return self._scoped.rows(tenant_id=tenant_id, **values)
