"""Issue 21: no table of ours carries an index that another of its indexes already gives. Each index is one
more write per INSERT, and per UPDATE that changes an indexed column (a job's claim and finish change
``status``, which three of its indexes hold), for no read it serves: a lookup on the leading columns of an
index is served by that index.

An index is redundant when its columns are the leading columns of another full (not partial, not
expression) index of the same table, in the same order and with the same operator classes and sort
options, and it enforces nothing (not unique). Typical: the index Django gives every foreign key, on a
table whose composite index or unique constraint leads with that key (every tenant-owned table's
``tenant``: ``TenantOwnedModel`` declares none, and the ``tenancy.E001`` check makes each such model
declare one that leads with it). Read from PostgreSQL's catalog, so an index added by hand in a migration
is seen too. Third-party apps' tables (Django's auth, allauth, axes, guardian) are theirs to shape.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's catalog"),
]


def _our_tables() -> list[str]:
    return sorted(
        model._meta.db_table
        for model in apps.get_models()
        if model.__module__.startswith("apps.") and not model._meta.auto_created and model._meta.managed
    )


def _indexes() -> dict[str, list[dict]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT t.relname, i.relname, ix.indkey::int2[], ix.indclass::oid[], ix.indoption::int2[],
                   ix.indisunique, ix.indpred IS NULL AND ix.indexprs IS NULL
            FROM pg_index ix
            JOIN pg_class i ON i.oid = ix.indexrelid
            JOIN pg_class t ON t.oid = ix.indrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = current_schema()
            """
        )
        found: dict[str, list[dict]] = {}
        for table, name, keys, classes, options, unique, full in cursor.fetchall():
            columns = list(zip(keys, classes, options, strict=True))
            found.setdefault(table, []).append({"name": name, "columns": columns, "unique": unique, "full": full})
        return found


def _redundant(indexes: list[dict]) -> list[str]:
    return sorted(
        {
            f"{a['name']} (the leading columns of {b['name']})"
            for a in indexes
            if not a["unique"] and a["full"]
            for b in indexes
            if b is not a
            and b["full"]
            and len(a["columns"]) < len(b["columns"])
            and b["columns"][: len(a["columns"])] == a["columns"]
        }
    )


def test_no_index_of_our_tables_is_the_leading_part_of_another():
    indexes = _indexes()
    tables = _our_tables()
    assert "jobs_job" in tables and all(table in indexes for table in tables)
    found = {table: _redundant(indexes[table]) for table in tables}
    assert {table: names for table, names in found.items() if names} == {}


def test_the_rule_finds_a_redundant_index():
    """The check itself: a foreign key's own index beside a unique constraint that leads with it (Django's
    auth tables, which are not ours, have exactly that)."""
    found = _redundant(_indexes()["auth_permission"])
    assert len(found) == 1 and "content_type_id" in found[0]
