"""The website.* job handlers: each reads the site's wanted state and converges its node."""

from __future__ import annotations

from django.db import transaction

from apps.jobs.errors import tenant_message
from apps.jobs.registry import PermanentError, handler
from apps.nodes.drivers import NodeError

from . import services
from .models import Website


def _locked(website_id) -> Website:
    return Website.objects.select_for_update(of=("self",)).select_related("node", "tenant").get(pk=website_id)


def converge(job) -> dict:
    website_id = job.payload.get("website")
    if not website_id or not Website.objects.filter(pk=website_id).exists():
        raise PermanentError(f"No website {website_id!r} in this tenant.")
    try:
        with transaction.atomic():
            return services.website_converge(site=_locked(website_id), job_type=job.type)
    except NodeError as exc:
        if exc.permanent or job.attempts >= job.max_attempts:
            services.website_fail(website_id=website_id, error=exc.message)
            raise PermanentError(exc.message) from exc
        raise
    except Exception as exc:
        if job.attempts >= job.max_attempts:
            services.website_fail(website_id=website_id, error=tenant_message(exc))
        raise


for _type in ("website.provision", "website.update", "website.suspend", "website.resume", "website.delete"):
    handler(_type)(converge)


@handler("website.purge")
def purge(job) -> dict:
    website_id = job.payload.get("website")
    site = Website.objects.select_related("node").filter(pk=website_id).first()
    if site is None:
        raise PermanentError(f"No website {website_id!r} in this tenant.")
    try:
        return services.website_purge(site=site)
    except NodeError as exc:
        if exc.permanent:
            raise PermanentError(exc.message) from exc
        raise
