"""Job handlers of hosting: ``hosting.disk_usage`` measures an account's websites on their nodes
(disk with ``du``, and the bytes they served since the last measurement from their access logs)."""

from __future__ import annotations

from apps.jobs import registry
from apps.nodes.drivers import driver_for

from . import services
from .models import HostingAccount


@registry.handler("hosting.disk_usage")
def disk_usage(job) -> dict:
    """``du`` of each live website of the account's customer, on the site's node, added up (MB,
    rounded up). A node that does not answer fails the attempt (retried); nothing is stored then."""
    account = HostingAccount.objects.filter(pk=job.payload.get("account")).first()
    if account is None:
        return {"skipped": "gone"}
    total = served = 0
    sites = services.customer_sites(account).select_related("node")
    for site in sites:
        driver = driver_for(site.node)
        total += int(driver.site_disk_usage(site.site_id)["bytes"])
        served += int(driver.site_bandwidth(site.site_id)["bytes"])
    used_mb = -(-total // (1024 * 1024))
    account = services.account_record_disk(account=account, used_mb=used_mb, served_bytes=served)
    return {"account": str(account.pk), "sites": len(sites), "disk_used_mb": used_mb, "served_bytes": served,
            "bandwidth_used_bytes": account.bandwidth_used_bytes,
            "over_quota": account.over_quota_since is not None}  # fmt: skip
