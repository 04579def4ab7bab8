from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination

PAGE_MODES = ("number", "cursor")


class KeysetPagination(CursorPagination):
    """``?page_mode=cursor``: a keyset page in the list's own ordering (its ``ordering`` or ``?ordering=``),
    answered without ``COUNT(*)``: ``{"next", "previous", "results"}``, the links carrying an opaque
    ``cursor``. DRF's CursorPagination keeps its position on the first ordering field and steps over
    equal values with an offset, so any ordering over the model's own fields pages exactly once each."""

    cursor_query_param = "cursor"

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size

    def get_page_size(self, request):
        return self.page_size

    def get_ordering(self, request, queryset, view):
        ordering = tuple(queryset.query.order_by or queryset.model._meta.ordering or ("-pk",))
        if not all(isinstance(f, str) and "__" not in f and f.lstrip("-") != "?" for f in ordering):
            raise ValidationError({"page_mode": ["This list's ordering cannot be paged by cursor."]})
        return ordering


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200
    page_mode_query_param = "page_mode"

    def paginate_queryset(self, queryset, request, view=None):
        mode = request.query_params.get(self.page_mode_query_param) or "number"
        if mode not in PAGE_MODES:
            raise ValidationError({self.page_mode_query_param: [f"One of: {', '.join(PAGE_MODES)}."]})
        self.keyset = KeysetPagination(self.get_page_size(request)) if mode == "cursor" else None
        if self.keyset is not None:
            return self.keyset.paginate_queryset(queryset, request, view)
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        if getattr(self, "keyset", None) is not None:
            return self.keyset.get_paginated_response(data)
        return super().get_paginated_response(data)

    def get_page_size(self, request):
        """A page size that is not a whole number from 1 to ``max_page_size`` is a 400 (DRF silently
        falls back to the default, which hides a client's mistake; the fuzz run flagged it)."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ValidationError(
                {self.page_size_query_param: [f"Enter a whole number from 1 to {self.max_page_size}."]}
            )
        return size

    def get_paginated_response_schema(self, schema):
        out = super().get_paginated_response_schema(schema)
        # ?page_mode=cursor answers without the count (that is its point).
        out["required"] = [name for name in out.get("required", []) if name != "count"]
        return out

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 1, "maximum": self.max_page_size}
            elif parameter["name"] == self.page_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 1}
                parameter["allowEmptyValue"] = True  # `?page=` is the first page
        parameters += [
            {
                "name": self.page_mode_query_param,
                "required": False,
                "in": "query",
                "description": "`number` (the default: `count` and numbered pages) or `cursor` (a keyset page "
                "in the list's ordering, no `count`; follow `next`/`previous`).",
                "schema": {"type": "string", "enum": list(PAGE_MODES)},
            },
            {
                "name": KeysetPagination.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "With `page_mode=cursor`: the position, as given in `next`/`previous`.",
                "schema": {"type": "string"},
            },
        ]
        return parameters
