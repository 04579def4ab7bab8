"""The backups row of ``make bench`` (bench/backups.py) runs end to end on a small tree: a site
backed up through the job, a bare ``restic backup`` beside it, and an unchanged second backup."""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as arguments)
from __future__ import annotations

import pytest

from bench import backups as bench_backups
from tests.backups_support import restic_bin  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def test_the_backup_bench_row_runs_on_a_small_tree(restic_bin, monkeypatch, tmp_path, settings):
    settings.MPANEL_NODE_ROOT = tmp_path / "node"
    monkeypatch.setenv("BENCH_BACKUP_MB", "3")
    row = bench_backups.run()
    assert row["megabytes"] == 3
    assert row["job_seconds"] > 0 and row["bare_restic_seconds"] > 0 and row["unchanged_second_backup_seconds"] > 0
    assert not (tmp_path / "node" / "web" / "www").exists() or not any((tmp_path / "node" / "web" / "www").iterdir())
