"""The website.* job handlers: each reads the site's wanted state and converges its node."""

from __future__ import annotations

from apps.jobs.registry import PermanentError, handler
from apps.nodes.drivers import NodeError

from . import services
from .models import Website


def _converge(site: Website, job_type: str) -> dict:
    return services.website_converge(site=site, job_type=job_type)


@handler("website.provision")
@handler("website.update")
@handler("website.suspend")
@handler("website.resume")
@handler("website.delete")
def converge(job) -> dict:
    return services.sites.run_job(job, _converge)


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
