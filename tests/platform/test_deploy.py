"""Production settings hold Django's deployment checklist, and every HTML page carries a Content
Security Policy that its own markup satisfies (no inline script)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check_deploy(tmp_path, **extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPANEL_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="mpanel.settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        MPANEL_VAR_DIR=str(tmp_path),
        ALLOWED_HOSTS="panel.example.com",
        **extra,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_is_clean_with_production_defaults(tmp_path):
    result = _check_deploy(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_behind_a_proxy_with_preload(tmp_path):
    result = _check_deploy(tmp_path, MPANEL_PROXY_SSL_HEADER="X-Forwarded-Proto", MPANEL_HSTS_PRELOAD="1")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_development_environment_is_allowed_plain_http(tmp_path):
    """`make run` serves plain HTTP on loopback: cookies not secure-only, no redirect (the checklist
    then warns, as it should)."""
    result = _check_deploy(tmp_path, MPANEL_ENVIRONMENT="development")
    assert result.returncode != 0
    for code in ("W008", "W012", "W016", "W004"):
        assert code in result.stdout + result.stderr


@pytest.mark.parametrize("path", ["/admin/login/", "/api/v1/docs/", "/api/v1/", "/api/v1/customers/"])
def test_html_pages_carry_a_csp_their_markup_satisfies(db, client, path):
    response = client.get(path, HTTP_ACCEPT="text/html")
    policy = response.headers.get("Content-Security-Policy", "")
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    body = response.content.decode()
    inline = [m for m in re.findall(r"<script\b([^>]*)>", body) if "src=" not in m and "application/json" not in m]
    assert inline == [], f"{path} has inline scripts the policy blocks"
