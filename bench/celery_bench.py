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


if os.environ.get("BENCH_PROFILE"):
    # BENCH_PROFILE=1: each pool process profiles the tasks it runs and writes the profile when it stops
    # (bench/suite.py prints them), so a job's cost inside the worker is seen beside the sender's.
    import cProfile
    import time

    from celery.signals import worker_process_init, worker_process_shutdown

    # CPU time, not wall time: on a shared machine a wall-clock profile charges a call for the time its
    # process waited for a core (a query's send, while the database's backend ran on it).
    _profile = cProfile.Profile(time.process_time)

    @worker_process_init.connect
    def _start_profile(**_kwargs) -> None:
        _profile.enable()

    @worker_process_shutdown.connect
    def _write_profile(**_kwargs) -> None:
        _profile.disable()
        _profile.dump_stats(os.path.join(os.environ["BENCH_PROFILE_DIR"], f"worker-{os.getpid()}.prof"))
