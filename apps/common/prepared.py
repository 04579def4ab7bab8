"""Querysets compiled to SQL once per process and run with new values: for a read on every request.

Building a queryset with joins, annotations and subqueries and compiling it to SQL costs more Python
than running it (the credentials' one query of every API request: ~40 % of authentication's time). Its
shape never changes from one request to the next, only the values it filters on. ``PreparedQuery``
builds the queryset once with placeholder values, compiles it, remembers where each value sits in the
parameters, and from then on runs the same SQL with the request's values, converting the rows into
model instances exactly as Django's own iterator does (the compiler's converters, ``from_db``, the
``select_related`` populators, the annotations as attributes).

Nothing is cached but the SQL text: every call reads the database, so a revoked or changed row is seen
at once. The statement goes through the connection's cursor (query logging and counting as usual).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Hashable
from typing import Any

from django.db import connections, router
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators
from django.db.transaction import TransactionManagementError

# The placeholder of each kind of value: unique, so that it is found again among the parameters.
_PLACEHOLDERS: dict[type, Callable[[], Any]] = {
    uuid.UUID: uuid.uuid4,
    str: lambda: "mpanel-placeholder-" + secrets.token_hex(16),
}


def as_uuid(value: Any) -> uuid.UUID | None:
    """``value`` as the UUID a prepared query takes: a UUID, or its text in any form ``uuid.UUID`` reads
    (as a ``UUIDField`` reads it); None for anything else (the caller's "no such row" or general path)."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            return None
    return None


def _as_given(value: Any) -> Any:
    return value


def _uuid_hex(value: uuid.UUID) -> str:
    return value.hex


# The forms a value of each kind can take among the compiled parameters (Django's UUIDField: the UUID on
# PostgreSQL, ``.hex`` where the database has no uuid type).
_FORMS: dict[type, tuple[Callable[[Any], Any], ...]] = {uuid.UUID: (_as_given, _uuid_hex)}


class _Compiled:
    def __init__(self, queryset: QuerySet, placeholders: dict[str, Any]) -> None:
        self.db = queryset.db
        compiler = queryset.query.get_compiler(using=self.db)
        sql, params = compiler.as_sql()
        if compiler.has_extra_select or compiler.klass_info is None:
            raise ValueError("PreparedQuery: a query of model rows without extra() columns only")
        self.sql = sql
        self.params = list(params)
        self.locks = queryset.query.select_for_update
        # Where each value goes, and in which form: as given, or as the field prepared it for this database
        # (a UUID is its 32 hex digits on a database without a uuid type: SQLite, the embedded default).
        self.slots: list[tuple[int, str, Callable[[Any], Any]]] = []
        for name, placeholder in placeholders.items():
            found = [
                (i, name, form)
                for i, value in enumerate(self.params)
                for form in _FORMS.get(type(placeholder), (_as_given,))
                if value == form(placeholder)
            ]
            if not found:
                raise ValueError(f"PreparedQuery: {name!r} does not reach the SQL parameters as given")
            self.slots += found
        self.compiler = compiler
        select, klass_info = compiler.select, compiler.klass_info
        # The columns' converters, worked out once (``results_iter`` works them out for every call).
        columns = [s[0] for s in select[: compiler.col_count]]
        if compiler.has_composite_fields(columns):
            raise ValueError("PreparedQuery: a query without composite primary keys only")
        self.converters = compiler.get_converters(columns)
        self.model: type[Model] = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [f[0].target.attname for f in select[self.start : self.end]]
        self.populators = get_related_populators(klass_info, select, self.db)
        self.annotations = dict(compiler.annotation_col_map or {})


class PreparedQuery:
    """``PreparedQuery(Model, build, tenant_id=uuid.UUID, key_hash=str)``: ``build(**values)`` returns the
    queryset of ``Model`` rows for the values (each of the declared type, used only as filter values);
    ``rows(**values)`` runs it. ``key()`` names what else the queryset's shape depends on (a registry's
    contents): a new key compiles again. ``for_write``: a read that locks (``select_for_update``), on the
    database the model is written to."""

    def __init__(
        self,
        model: type[Model],
        build: Callable[..., QuerySet],
        key: Callable[[], Hashable] = lambda: None,
        *,
        for_write: bool = False,
        **kinds: type,
    ) -> None:
        self.model = model
        self.build = build
        self.key = key
        self.for_write = for_write
        self.kinds = kinds

    def _get(self) -> _Compiled:
        db = router.db_for_write(self.model) if self.for_write else router.db_for_read(self.model)
        # Kept on the connection object (one per thread), which the compiler was made for: it goes with it.
        connection = connections[db]
        held = connection.__dict__.setdefault("_mpanel_prepared", {})
        cache_key = (id(self), self.key())
        compiled = held.get(cache_key)
        if compiled is None:
            placeholders = {name: _PLACEHOLDERS[kind]() for name, kind in self.kinds.items()}
            compiled = _Compiled(self.build(**placeholders), placeholders)
            if compiled.db != db:
                raise ValueError("PreparedQuery: the queryset reads another database than its model's")
            held[cache_key] = compiled
        return compiled

    def rows(self, **values: Any) -> list[Model]:
        for name, kind in self.kinds.items():
            if type(values[name]) is not kind:
                raise TypeError(f"PreparedQuery: {name} must be a {kind.__name__}")
        compiled = self._get()
        params = list(compiled.params)
        for index, name, form in compiled.slots:
            params[index] = form(values[name])
        connection = connections[compiled.db]
        if compiled.locks and connection.features.has_select_for_update and connection.get_autocommit():
            # Django's own check at each compile: a lock outside a transaction is let go at once.
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            results = cursor.fetchall()
        out = []
        rows = compiled.compiler.apply_converters(results, compiled.converters) if compiled.converters else results
        for row in rows:
            obj = compiled.model.from_db(compiled.db, compiled.init_list, row[compiled.start : compiled.end])
            for populator in compiled.populators:
                populator.populate(row, obj)
            for attr_name, position in compiled.annotations.items():
                setattr(obj, attr_name, row[position])
            out.append(obj)
        return out
