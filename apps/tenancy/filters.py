"""The filter backend of every list (the settings' ``DEFAULT_FILTER_BACKENDS``): the ground floor's
hardened django-filter backend (``apps.common.filters``), with model choices bound to the tenant.

A foreign-key filter (``?node=<uuid>``) of a tenant-owned model: django-filter builds its queryset
once, when the FilterSet class is created at import, where no tenant is in scope, so our fail-closed
manager hands out a queryset that refuses to run (ScopeError, a 500). The backend rebinds such
querysets to the tenant in scope of the request, so a foreign key of another tenant is "not a valid
choice" like any unknown id, and never an existence oracle.
"""

from __future__ import annotations

from django.db.models import QuerySet

from apps.common.filters import FilterBackend

from .scoping import UnscopedQuerySet


class ScopedFilterBackend(FilterBackend):
    def bind_filter_queryset(self, queryset: QuerySet) -> QuerySet:
        """The same choices, evaluated with the scope of the current request (its tenant)."""
        if not isinstance(queryset, UnscopedQuerySet):
            return queryset
        scoped = queryset.model._default_manager.all()
        # Keep any condition the filter's queryset carried (limit_choices_to, a custom filter).
        return scoped & queryset.bound() if isinstance(scoped, QuerySet) else scoped
