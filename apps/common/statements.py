"""Plain SQL statements that write what the ORM would write, with their text made once per process.

The ORM builds and compiles an INSERT or UPDATE for every row it saves (a third of an audit event's cost, on
every mutation of the product). ``save(obj, ...)`` sends the same INSERT of a new row, or UPDATE of the fields
named, through a statement made once per model: the values go through each field's ``pre_save`` and
``get_db_prep_save`` as ``Model.save()`` sends them
(defaults, ``auto_now_add``, JSON adaptation, a field subclass's own preparation), through the
connection's cursor (query logging and counting, ``execute_wrappers``, the database errors as
``django.db``'s). ``save`` does it for a model that reads nothing back and whose saves nobody listens to,
and answers False for any other save, which the caller leaves to the ORM.

The job outbox's statements (apps/jobs/statements.py) are built from the same parts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, models, transaction
from django.db.models.signals import post_save, pre_save

M = TypeVar("M", bound=models.Model)


def default_db() -> Any:
    """This thread's connection itself: ``django.db.connection`` is a proxy that looks it up again at every
    attribute (a few dozen times per statement's values)."""
    return connections[DEFAULT_DB_ALIAS]


def quote_name(name: str) -> str:
    return connection.ops.quote_name(name)


def _is_str(value: Any) -> bool:
    return value is None or type(value) is str


def _is_uuid(value: Any) -> bool:
    return value is None or type(value) is uuid.UUID


def _is_aware(value: Any) -> bool:
    return value is None or (type(value) is datetime and value.utcoffset() is not None)


@cache
def unchanged(field: models.Field, vendor: str) -> Callable[[Any], bool] | None:
    """For the fields whose ``get_db_prep_save`` on PostgreSQL hands some values back as they are (text to a
    plain character field, a UUID to a UUID field or a key to one, an aware datetime to a datetime field):
    the test of those values, so they skip the field's conversion chain (most of the Python of a row's
    write); None for every other field (subclasses included: ``TenantErrorField`` redacts). Every other
    value is converted as the ORM converts it; tests/kernel/test_jobs_prepared.py checks them against
    ``get_db_prep_save`` value by value."""
    kind = type(field)
    if isinstance(field, models.ForeignKey) and kind in (models.ForeignKey, models.OneToOneField):
        kind = type(field.target_field)
    if kind in (models.CharField, models.TextField):
        return _is_str
    if vendor != "postgresql":
        return None  # SQLite stores a UUID as its hex digits and a datetime as text: always converted
    if kind is models.UUIDField:
        return _is_uuid
    if kind is models.DateTimeField:
        return _is_aware
    return None


@cache
def model_columns(model: type[models.Model]) -> list[str]:
    return [quote_name(f.column) for f in model._meta.concrete_fields]


@cache
def _fields(model: type[models.Model], vendor: str) -> list[tuple[models.Field, Callable[[Any], bool] | None]]:
    return [(f, unchanged(f, vendor)) for f in model._meta.concrete_fields]


def insert_values(obj: models.Model) -> tuple[list[str], list[Any]]:
    """The columns and values an ORM INSERT of the new ``obj`` would send (defaults and ``auto_now`` set
    on ``obj`` itself, as ``save()`` does)."""
    values = _insert_params(obj)
    if values is None:
        raise ValueError(f"{type(obj).__name__}: a value to insert is an expression; save() writes it")
    return model_columns(type(obj)), values


def _insert_params(obj: models.Model) -> list[Any] | None:
    """``insert_values``' values, the row marked written; None (nothing marked) when a value is an expression
    or a model instance, which only the ORM's compiler writes."""
    db = default_db()
    values = []
    for field, same in _fields(type(obj), db.vendor):
        value = field.pre_save(obj, True)
        if same is not None and same(value):
            values.append(value)
        elif _plain(value):
            values.append(field.get_db_prep_save(value, db))
        else:
            return None
    obj._state.adding = False
    obj._state.db = db.alias
    return values


@cache
def insert_sql(model: type[models.Model]) -> str:
    columns = model_columns(model)
    return (
        f"INSERT INTO {quote_name(model._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608 (our table, columns)
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )


@cache
def _plain_model(model: type[models.Model]) -> bool:
    """A model whose rows ``save`` writes with one plain statement and reads nothing back: no parent table,
    no generated or database-default column, no field with a placeholder of its own, a primary key its
    default sets."""
    meta = model._meta
    return (
        not meta.parents
        and not meta.db_returning_fields
        and meta.pk.has_default()
        and not any(
            getattr(f, "generated", False) or f.has_db_default() or hasattr(f, "get_placeholder")
            for f in meta.concrete_fields
        )
    )


def _listened(model: type[models.Model]) -> bool:
    # Asked at each save: a receiver may connect at any time.
    return pre_save.has_listeners(model) or post_save.has_listeners(model)


def _plain(value: Any) -> bool:
    """A value the ORM would send as it is prepared (not an expression, not a model instance)."""
    return not (hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save"))


def save(
    obj: models.Model,
    *,
    force_insert: bool = False,
    force_update: bool = False,
    using: str | None = None,
    update_fields: Any = None,
) -> bool:
    """Write ``obj`` as ``obj.save(...)`` with these arguments would, by a statement made once per model:
    the INSERT of a new row, or the UPDATE of ``update_fields``. False (nothing done) for any other save,
    which the caller leaves to the ORM: a save that sends signals someone listens to, of another
    database, of a model that reads values back (``_plain_model``), of an expression, a full save of an
    existing row (Django's update-else-insert), or arguments the ORM refuses (it then says why)."""
    model = type(obj)
    if using not in (None, DEFAULT_DB_ALIAS) or force_update or not _plain_model(model) or _listened(model):
        return False
    if update_fields is not None:
        if force_insert or obj._state.adding or obj.pk is None:
            return False
        fields = _update_fields(model, frozenset(update_fields))
        if not fields:
            return False  # nothing to write, or a name that is no field: the ORM's answer
        obj._prepare_related_fields_for_save(operation_name="save")
        values = [f.pre_save(obj, False) for f in fields]
        if not all(_plain(v) for v in values):
            return False
        db = default_db()
        params = [f.get_db_prep_save(v, db) for f, v in zip(fields, values, strict=True)]
        params.append(model._meta.pk.get_db_prep_value(obj.pk, db))
        with transaction.mark_for_rollback_on_error(db.alias), db.cursor() as cursor:
            cursor.execute(_update_sql(model, tuple(f.name for f in fields)), params)
            if cursor.rowcount == 0:
                raise DatabaseError("Save with update_fields did not affect any rows.")
        obj._state.db = db.alias
        return True
    if not (force_insert or obj._state.adding):
        return False  # an existing row saved whole: the ORM's update, else insert
    obj._prepare_related_fields_for_save(operation_name="save")
    return _write_new(obj)


def save_new(obj: M) -> M:
    """``obj.save(force_insert=True)``: by ``save`` above when it can, else (or when the model has a ``save``
    of its own, which then decides) by the model's ``save``."""
    if type(obj).save is not models.Model.save or not save(obj, force_insert=True):
        obj.save(force_insert=True)
    return obj


def create(model: type[models.Model], **fields: Any) -> models.Model:
    """``model.objects.create(**fields)``, through ``save_new``."""
    return save_new(model(**fields))


@cache
def _update_fields(model: type[models.Model], names: frozenset[str]) -> tuple[models.Field, ...]:
    """The fields an UPDATE of ``names`` writes, in the model's order as the ORM's (empty: a name that is not
    one of its non-key concrete fields, or none at all)."""
    meta = model._meta
    fields = tuple(
        f for f in meta.local_concrete_fields if f is not meta.pk and (f.name in names or f.attname in names)
    )
    known = {f.name for f in fields} | {f.attname for f in fields}
    return fields if names and names <= known else ()


def assignments(model: type[models.Model], names: tuple[str, ...]) -> str:
    """``col = %s, …`` for the fields ``names`` of ``model``: the SET list of an UPDATE."""
    return ", ".join(f"{quote_name(model._meta.get_field(name).column)} = %s" for name in names)


@cache
def _update_sql(model: type[models.Model], names: tuple[str, ...]) -> str:
    table = quote_name(model._meta.db_table)
    return f"UPDATE {table} SET {assignments(model, names)} WHERE {table}.{quote_name(model._meta.pk.column)} = %s"  # noqa: S608 (our columns)


def _write_new(obj: models.Model) -> bool:
    values = _insert_params(obj)
    if values is None:
        return False
    db = default_db()
    try:
        # As ``save``: a failed write inside a transaction marks it for rollback (Django then refuses
        # further queries in it instead of the database answering that the transaction is aborted).
        with transaction.mark_for_rollback_on_error(db.alias), db.cursor() as cursor:
            cursor.execute(insert_sql(type(obj)), values)
    except BaseException:
        obj._state.adding = True  # not written: still a new row, as after a failed ``save``
        raise
    return True
