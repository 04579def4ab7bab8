"""Issue 21: the tables written on every job, webhook delivery, mutation and metrics batch carry no index
that another index of theirs already gives: each index is one more write per INSERT, and per UPDATE that
changes an indexed column (a job's claim and finish change ``status``, which three of its indexes hold).

An index is redundant here when its columns are the leading columns of another full (not partial) index of
the same table, in the same order and with the same operator classes, and it enforces nothing (not unique).
Read from PostgreSQL's catalog, so an index added by hand in a migration is seen too.
"""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's catalog"),
]

HOT_TABLES = [
    "jobs_job",
    "jobs_jobattempt",
    "billing_webhookevent",
    "audit_auditevent",
    "metrics_sample",
    "metrics_ingestnonce",
]


def _indexes(table: str) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.relname, ix.indkey::int2[], ix.indclass::oid[], ix.indoption::int2[], ix.indisunique,
                   ix.indpred IS NULL AND ix.indexprs IS NULL
            FROM pg_index ix
            JOIN pg_class i ON i.oid = ix.indexrelid
            JOIN pg_class t ON t.oid = ix.indrelid
            WHERE t.relname = %s
            """,
            [table],
        )
        return [
            {"name": name, "columns": list(zip(keys, classes, options, strict=True)), "unique": unique, "full": full}
            for name, keys, classes, options, unique, full in cursor.fetchall()
        ]


@pytest.mark.parametrize("table", HOT_TABLES)
def test_no_index_of_a_hot_table_is_the_prefix_of_another(table):
    indexes = _indexes(table)
    assert indexes, f"{table}: no such table"
    redundant = [
        f"{a['name']} (leading columns of {b['name']})"
        for a in indexes
        for b in indexes
        if a is not b
        and not a["unique"]
        and a["full"]
        and b["full"]
        and len(a["columns"]) < len(b["columns"])
        and b["columns"][: len(a["columns"])] == a["columns"]
    ]
    assert redundant == [], f"{table}: {redundant}"
