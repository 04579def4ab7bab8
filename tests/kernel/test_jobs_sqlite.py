"""The embedded default's job path (SQLite: ``statements.claim_plain`` and ``finish_plain``) on a real
SQLite database, against both PostgreSQL paths (the one-statement one and the plain one): the same
cases leave the same job rows, attempt rows and audit events, and answer the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.serializers.json import DjangoJSONEncoder

from apps.jobs import services
from tests.kernel.jobs_trails import run_cases

ROOT = Path(__file__).resolve().parents[2]
MAIN = "import django; django.setup(); from tests.kernel import jobs_trails; jobs_trails.main()"


def on_sqlite(tmp_path: Path) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mpanel.settings_test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        "MPANEL_VAR_DIR": str(tmp_path / "var"),
        "MPANEL_JOBS_EAGER": "1",
    }
    done = subprocess.run([sys.executable, "-c", MAIN], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def as_json(value) -> dict:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


@pytest.mark.django_db(transaction=True)
def test_jobs_leave_the_same_rows_on_sqlite_as_on_postgresql(tenant_a, tmp_path, monkeypatch, settings):
    settings.MPANEL_JOBS_EAGER = True
    one_statement = as_json(run_cases(tenant_a.tenant, "run"))
    with monkeypatch.context() as m:
        m.setattr(services, "one_statement", lambda: False)
        plain = as_json(run_cases(tenant_a.tenant, "plain"))  # its own keys: the test handlers' effects are per key
    sqlite = on_sqlite(tmp_path)
    assert plain == one_statement
    assert sqlite == one_statement

    # What the trails say, read once here.
    ok = sqlite["test.record-5"]
    assert ok["again"] == "skipped"
    assert ok["trail"]["job"]["status"] == "SUCCEEDED" and ok["trail"]["job"]["sent_when_started"] is True
    assert ok["trail"]["job"]["result"] == {"key": "KEY", "created": True}
    assert [a["outcome"] for a in ok["trail"]["attempts"]] == ["succeeded"]
    assert [e["action"] for e in ok["trail"]["events"]] == ["job.enqueue", "job.succeeded"]
    broken = sqlite["test.broken-5"]["trail"]
    assert broken["job"]["status"] == "FAILED" and broken["job"]["last_error"]
    assert [e["action"] for e in broken["events"]] == ["job.enqueue", "job.failed"]
    retry = sqlite["test.flaky-5"]
    assert retry["again"] == "not_due" and retry["trail"]["job"]["status"] == "PENDING"
    assert "dispatched_at" not in retry["trail"]["job"]["times_set"]  # due later: the embedded loop sends it
    assert [e["action"] for e in retry["trail"]["events"]] == ["job.enqueue"]
    assert sqlite["test.flaky-1"]["trail"]["job"]["status"] == "FAILED"
    late = sqlite["superseded"]
    assert late["claimed_attempt"] == 2 and late["claimed_tenant"] is True
    assert late["late_success"] == late["late_retry"] == "superseded"
    assert [a["outcome"] for a in late["trail"]["attempts"]] == ["succeeded", "lost"]
    assert late["trail"]["job"]["status"] == "PENDING" and late["trail"]["job"]["result"] == {
        "key": "KEY",
        "created": True,
    }
    assert sqlite["not_a_job"] is None
