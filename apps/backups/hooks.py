"""What backups adds to other apps' extension points (registered when the app is ready)."""

from __future__ import annotations

from apps.jobs.lifecycle import BEFORE_DELETE

from . import services

BEFORE_DELETE.register("backups.final")(services.final_snapshot)
