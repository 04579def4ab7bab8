"""dns.zone.* job handlers: push the zone as it is now (not as it was when the job was stored), so
jobs that run late, twice or out of order all converge the node to the latest serial.

Each runs through the zone's ``Lifecycle.run_job``: the zone is locked for the push (a change waits
for it, then stores its own push), a zone that is gone is skipped, and a failure marks the zone
``error`` (a zone being deleted stays ``deleting`` and records only the reason)."""

from __future__ import annotations

from apps.jobs.registry import PermanentError, handler
from apps.nodes.drivers import driver_for

from . import services
from .models import Zone, ZoneStatus

KEEP = {ZoneStatus.DELETING}


def _sync(zone: Zone, job_type: str) -> dict:
    if zone.status == ZoneStatus.DELETING:
        return {"skipped": "zone deleted"}
    spec = services.zone_spec(zone)
    result = driver_for(zone.node).dns_zone_ensure(spec)
    zone.status, zone.served_serial, zone.last_error = ZoneStatus.ACTIVE, spec["serial"], ""
    zone.save(update_fields=["status", "served_serial", "last_error"])
    return {**result, "serial": spec["serial"]}


def _delete(zone: Zone, job_type: str) -> dict:
    if zone.status != ZoneStatus.DELETING:
        raise PermanentError("The zone is not being deleted.")
    result = driver_for(zone.node).dns_zone_delete(zone.origin)
    zone.delete()
    return result


@handler("dns.zone.sync")
def zone_sync(job) -> dict:
    return services.zones.run_job(job, _sync, on_missing="skip", keep=KEEP)


@handler("dns.zone.delete")
def zone_delete(job) -> dict:
    return services.zones.run_job(job, _delete, on_missing="skip", keep=KEEP)
