"""Plain SQL statements that write what the ORM would write, with their text made once per process.

The ORM builds and compiles an INSERT for every row it saves (a third of an audit event's cost, on every
mutation of the product). ``insert(obj)`` sends the same row through a statement made once per model:
the values go through each field's ``pre_save`` and ``get_db_prep_save`` as ``save()`` sends them
(defaults, ``auto_now_add``, JSON adaptation, a field subclass's own preparation), through the
connection's cursor (query logging and counting, ``execute_wrappers``, the database errors as
``django.db``'s). ``insert`` is for models whose ``save`` is the ORM's own and for which no ``pre_save``
or ``post_save`` receiver listens (``plain_insert_allowed`` says so; a caller falls back to ``save``).

The job outbox's statements (apps/jobs/statements.py) are built from the same parts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.models.signals import post_save, pre_save


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
    db = default_db()
    columns = model_columns(type(obj))
    values = []
    for field, same in _fields(type(obj), db.vendor):
        value = field.pre_save(obj, True)
        values.append(value if same is not None and same(value) else field.get_db_prep_save(value, db))
    obj._state.adding = False
    obj._state.db = db.alias
    return columns, values


@cache
def insert_sql(model: type[models.Model]) -> str:
    columns = model_columns(model)
    return (
        f"INSERT INTO {quote_name(model._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608 (our table, columns)
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )


def plain_insert_allowed(model: type[models.Model]) -> bool:
    """Whether ``insert`` writes what ``save(force_insert=True)`` would do: no receiver of the model's save
    signals (``insert`` sends none), and a primary key its default sets (nothing to read back)."""
    return not (pre_save.has_listeners(model) or post_save.has_listeners(model)) and not model._meta.pk.db_returning


def insert(obj: models.Model) -> None:
    """INSERT the new ``obj`` as ``obj.save(force_insert=True)`` would (see ``plain_insert_allowed``)."""
    _columns, values = insert_values(obj)
    db = default_db()
    try:
        # As ``save``: a failed write inside a transaction marks it for rollback (Django then refuses
        # further queries in it instead of the database answering that the transaction is aborted).
        with transaction.mark_for_rollback_on_error(db.alias), db.cursor() as cursor:
            cursor.execute(insert_sql(type(obj)), values)
    except BaseException:
        obj._state.adding = True  # not written: still a new row, as after a failed ``save``
        raise
