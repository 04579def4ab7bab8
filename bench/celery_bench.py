"""The Celery app of the job benchmark's worker: mPanel's app plus a no-op job handler and a bare no-op task.

Run as ``celery -A bench.celery_bench worker``; the bench process imports it too, to send.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import redis
from celery import shared_task
from django.conf import settings

from apps.jobs.registry import handler
from mpanel.celery import app

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
