"""The Celery app of the job benchmark's worker: mPanel's app plus a no-op job handler and a bare no-op task.

Run as ``celery -A bench.celery_bench worker``; the bench process imports it too, to send.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

# The handler below is registered by importing apps.jobs, whose models need the app registry loaded
# (the worker imports this module before Django is set up).
django.setup()

import redis  # noqa: E402
from celery import shared_task  # noqa: E402
from django.conf import settings  # noqa: E402

from apps.jobs.registry import handler  # noqa: E402
from mpanel.celery import app  # noqa: E402

__all__ = ["app"]
COUNTER = "mpanel:bench:noop"
_redis: list = []


@handler("bench.noop")
def noop_job(job):
    return {}


@shared_task(name="bench.noop", ignore_result=True)
def noop_task() -> None:
    # The floor's one unavoidable cost: saying it ran (the job's is its row turning SUCCEEDED).
    if not _redis:
        _redis.append(redis.Redis.from_url(settings.REDIS_URL))
    _redis[0].incr(COUNTER)
