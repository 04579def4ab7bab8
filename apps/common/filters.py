"""The query-string filter backend of every list: django-filter, made safe for hostile input.

Two classes of filter value passed django-filter's own validation and then crashed the request
(found by the schemathesis fuzz run, see docs/testing.md):

- a foreign-key filter (``?node=<uuid>``) of a tenant-owned model, whose choices were built at
  import with no tenant in scope: ``apps.tenancy.filters.ScopedFilterBackend`` (the backend the
  settings name) rebinds them through the ``bind_filter_queryset`` hook below;
- an aware datetime whose UTC offset PostgreSQL refuses (Python accepts up to ±23:59, PostgreSQL
  ±15:59) or that leaves the representable years once moved to UTC: every datetime value is
  normalised to UTC here, and one that cannot be is a 400 on its own field.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet
from django_filters import utils
from django_filters.filters import BooleanFilter, QuerySetRequestMixin
from django_filters.rest_framework import DjangoFilterBackend

BOOLEAN_WORDS = ("", "true", "false", "True", "False", "1", "0")


def _to_utc(value):
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)  # OverflowError out of years 1..9999
    return value


class FilterBackend(DjangoFilterBackend):
    def bind_filter_queryset(self, queryset: QuerySet) -> QuerySet:
        """The choices of a model filter, as the request may see them (here: as they are)."""
        return queryset

    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            for flt in filterset.filters.values():
                if isinstance(flt, QuerySetRequestMixin) and not callable(flt.queryset):
                    flt.queryset = self.bind_filter_queryset(flt.queryset)
        return filterset

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if filterset.is_valid():
            form = filterset.form
            for name, flt in filterset.filters.items():
                # django-filter reads any unknown word as "no filter" (NullBooleanField): a typo
                # would silently list everything, so it is a 400 like any other bad value.
                value = request.query_params.get(name)
                if isinstance(flt, BooleanFilter) and value not in (None, *BOOLEAN_WORDS):
                    form.add_error(name, "Enter true or false.")
            for name, value in list(form.cleaned_data.items()):
                try:
                    if isinstance(value, list | tuple):
                        form.cleaned_data[name] = type(value)(_to_utc(v) for v in value)
                    elif isinstance(value, slice):
                        form.cleaned_data[name] = slice(_to_utc(value.start), _to_utc(value.stop))
                    else:
                        form.cleaned_data[name] = _to_utc(value)
                except OverflowError:
                    form.add_error(name, "Enter a date and time that stays within years 1 to 9999 in UTC.")
        if not filterset.is_valid():
            raise utils.translate_validation(filterset.errors)
        return filterset.qs
