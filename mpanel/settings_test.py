"""Settings for the test suite: the production settings plus a test-only app of job handlers."""

import os
from pathlib import Path

# Under pytest-xdist each worker process gets its own node root and media folder: the node's files
# (vhosts, zones, pods, repositories) are per-machine state the tests assert on, and two workers
# must not see each other's. Set in the environment so the Celery workers and agents the tests
# start inherit the same folder.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _xdist_worker and os.environ.get("MPANEL_VAR_DIR"):
    _own = Path(os.environ["MPANEL_VAR_DIR"]) / "xdist" / _xdist_worker
    os.environ.setdefault("MPANEL_NODE_ROOT", str(_own / "node"))

from .settings import *  # noqa: E402, F403
from .settings import INSTALLED_APPS, REST_FRAMEWORK  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "tests.support"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Tests dispatch jobs in-process unless a test runs the real worker (see tests/conftest.py).
MPANEL_JOBS_EAGER = os.environ.get("MPANEL_JOBS_EAGER", "1") != "0"
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"login": "1000/min", "public": "1000/min"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Every delivery asks for its drain (a process's memory of its last ask would let one test's delivery silence
# the next test's); tests/billing/test_webhook_answer_fast.py turns the window on where it tests it.
MPANEL_WEBHOOK_NUDGE_SECONDS = 0
# The suite's clients and live servers speak plain HTTP, whatever MPANEL_ENVIRONMENT says
# (tests/test_deploy.py checks the production defaults in a process of their own).
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0

# No ACME order for every hosting plan's website the suite makes (there is no CA): the tests of it turn it on.
MPANEL_SSL_AUTO_ISSUE = False
if _xdist_worker and os.environ.get("MPANEL_VAR_DIR"):
    MEDIA_ROOT = Path(os.environ["MPANEL_VAR_DIR"]) / "xdist" / _xdist_worker / "media"
