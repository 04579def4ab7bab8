"""Indexes for the admin's global search (apps/console/search.py) on PostgreSQL.

The search matches prefixes case-insensitively (``istartswith``), which Django writes as
``UPPER(col::text) LIKE UPPER('term%')``: an expression index on ``UPPER(col::text)`` with
``text_pattern_ops`` answers it in any collation. They live here, not in each app's models,
because only the console searches this way. SQLite (``make run``) has no such indexes and
needs none at its size.
"""

from django.db import migrations

SEARCHED = [
    ("tenancy", "Tenant", ["name", "slug"]),
    ("customers", "Customer", ["name", "email"]),
    ("domains", "Domain", ["name"]),
    ("billing", "Invoice", ["number"]),
    ("cloudpods", "CloudPod", ["name"]),
    ("nodes", "Node", ["hostname"]),
]


def _indexes(apps):
    for app_label, model_name, columns in SEARCHED:
        table = apps.get_model(app_label, model_name)._meta.db_table
        for column in columns:
            yield table, column, f"console_search_{table}_{column}"[:63]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column, name in _indexes(apps):
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" (UPPER("{column}"::text) text_pattern_ops)'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _table, _column, name in _indexes(apps):
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0001_initial"),
        ("customers", "0001_initial"),
        ("domains", "0001_initial"),
        ("billing", "0001_initial"),
        ("cloudpods", "0001_initial"),
        ("nodes", "0001_initial"),
    ]

    operations = [migrations.RunPython(create, drop)]
