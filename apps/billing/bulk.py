"""Writing a batch of new rows in one go: PostgreSQL's ``COPY``, the ORM's ``bulk_create`` elsewhere.

The billing run writes a few hundred invoices, lines and charges per batch (its audit events go the
same way through ``audit.insert_plain``). Through ``bulk_create`` most of that time went into Django
preparing each value and psycopg quoting them client-side into ``unnest`` arrays (an escaping regex per
element, in Python); ``COPY`` sends the rows as they are, formatted by psycopg's C code, and is
PostgreSQL's fastest way in. Both paths write the
same columns with the same values (``tests/billing/test_billing_run_copy.py`` compares them): the
timestamps of ``auto_now``/``auto_now_add`` fields are set per row as ``bulk_create`` sets them, and
JSON goes through the field's encoder.

The rows must be new (their primary keys set, as every model here has a UUID default) and valid: a
unique or check constraint that refuses one fails the whole ``COPY`` (``IntegrityError``; a caller
that expects a duplicate wraps it in a savepoint and falls back, as the charges do).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, models

# Tests turn it off to compare the two paths on PostgreSQL.
USE_COPY = True


def copy_enabled() -> bool:
    return USE_COPY and connection.vendor == "postgresql"


def insert_all(model: type[models.Model], objs: Iterable[models.Model]) -> None:
    """Insert ``objs`` (new instances of ``model``, in the caller's transaction)."""
    objs = list(objs)
    if not objs:
        return
    if not copy_enabled():
        model._base_manager.bulk_create(objs, batch_size=1000)
        return
    meta = model._meta
    fields = list(meta.concrete_fields)
    stamped = [f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)]
    # JSON columns are adapted by the field (its encoder; psycopg's Jsonb); every other value is one
    # psycopg dumps itself (str, Decimal, date, datetime, UUID, bool, int, None).
    json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
    attnames = [f.attname for f in fields]
    quote = connection.ops.quote_name
    sql = f"COPY {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) FROM STDIN"
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        for obj in objs:
            for field in stamped:
                field.pre_save(obj, add=True)  # sets the attribute, as bulk_create does
            row = []
            for attname in attnames:
                value = getattr(obj, attname)
                if attname in json_fields:
                    value = meta.get_field(attname).get_db_prep_save(value, connection)
                row.append(value)
            copy.write_row(row)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
