"""Index changes that do not stop writes while they run, for the tables that are written all the time.

``CREATE INDEX`` holds a lock that blocks every INSERT, UPDATE and DELETE of its table until the index is
built: on a platform's audit trail or job table (millions of rows, a write per mutation) a deploy would
hold up every request that records or enqueues anything for as long as the build takes. On PostgreSQL
these build and drop with ``CONCURRENTLY`` (writes go on; the migration must say ``atomic = False``, as
PostgreSQL runs neither inside a transaction). Elsewhere (SQLite, the embedded default: one process, a
small database) they are Django's plain ``AddIndex``/``RemoveIndex``. The migration state is theirs
either way, so ``makemigrations`` sees no difference.
"""

from __future__ import annotations

from django.contrib.postgres import operations as postgres
from django.db import migrations


class _PlainElsewhere:
    """PostgreSQL's concurrent operation there, Django's plain one (``plain``) on any other database."""

    plain: type[migrations.AddIndex] | type[migrations.RemoveIndex]

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)
        return super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)
        return super().database_backwards(app_label, schema_editor, from_state, to_state)


class AddIndexConcurrently(_PlainElsewhere, postgres.AddIndexConcurrently):
    plain = migrations.AddIndex


class RemoveIndexConcurrently(_PlainElsewhere, postgres.RemoveIndexConcurrently):
    plain = migrations.RemoveIndex
