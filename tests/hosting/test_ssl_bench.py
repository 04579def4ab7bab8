"""The SSL row of ``make bench`` (bench/certificates.py) runs end to end: a certificate issued through
the API by pebble, served by nginx and verified, next to a bare ``acme`` issuance of the same name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import certificates as bench_ssl

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_ssl_bench_row_issues_and_serves(monkeypatch, tmp_path, settings):
    if not (shutil.which("pebble") or Path("/usr/bin/pebble").exists()):
        pytest.fail("pebble is needed: run the tests with `make test` (it installs Debian's pebble)")
    monkeypatch.setenv("BENCH_SSL_RUNS", "1")
    settings.MPANEL_NODE_ROOT = tmp_path / "node"
    row = bench_ssl.run()
    assert row["runs"] == 1, row
    assert row["issue_to_served_seconds"] > 0 and row["bare_acme_seconds"] > 0
    assert row["ratio_to_bare_acme"] == round(row["issue_to_served_seconds"] / row["bare_acme_seconds"], 2)
