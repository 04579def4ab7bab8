"""Query expressions shared by the apps' querysets."""

from __future__ import annotations

from django.db.models import IntegerField, QuerySet, Subquery


class SubqueryCount(Subquery):
    """The number of rows of ``queryset`` (correlated with ``OuterRef``) as a scalar subquery.

    The same number as ``Count("relation")`` on a list, without its ``LEFT JOIN … GROUP BY`` over every row
    of the outer query: the page's ``LIMIT`` applies first (one index probe per row shown), and ``COUNT(*)``
    of the list drops the annotation (Django strips annotations nothing refers to, which it cannot do for an
    aggregate that sets the ``GROUP BY``). Never ``NULL``: a row with nothing related counts 0."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) _count)"
    output_field = IntegerField()

    def __init__(self, queryset: QuerySet, **extra) -> None:
        # Only the rows' existence counts: select a constant, unordered.
        super().__init__(queryset.order_by().values("pk"), **extra)
