"""dns.zone.* job handlers: push the zone as it is now (not as it was when the job was stored), so
jobs that run late, twice or out of order all converge the node to the latest serial."""

from __future__ import annotations

from django.db import transaction

from apps.jobs.registry import PermanentError, handler
from apps.nodes.drivers import NodeError, driver_for

from . import services
from .models import Zone, ZoneStatus


def _fail(zone_id, job, message: str, permanent: bool) -> None:
    if permanent or job.attempts >= job.max_attempts:
        Zone.objects.filter(pk=zone_id).update(status=ZoneStatus.ERROR, last_error=message[:2000])
        raise PermanentError(message)


@handler("dns.zone.sync")
def zone_sync(job) -> dict:
    zone_id = job.payload.get("zone")
    zone = Zone.objects.select_related("node").filter(pk=zone_id).first()
    if zone is None or zone.status == ZoneStatus.DELETING:
        return {"skipped": "zone deleted"}
    spec = services.zone_spec(zone)
    try:
        result = driver_for(zone.node).dns_zone_ensure(spec)
    except NodeError as exc:
        _fail(zone_id, job, exc.message, exc.permanent)
        raise
    # Only the serial that was pushed becomes served; a newer change has its own job.
    Zone.objects.filter(pk=zone_id, serial=spec["serial"]).exclude(status=ZoneStatus.DELETING).update(
        status=ZoneStatus.ACTIVE, served_serial=spec["serial"], last_error=""
    )
    return {**result, "serial": spec["serial"]}


@handler("dns.zone.delete")
def zone_delete(job) -> dict:
    zone_id = job.payload.get("zone")
    zone = Zone.objects.select_related("node").filter(pk=zone_id).first()
    if zone is None:
        return {"skipped": "zone gone"}
    if zone.status != ZoneStatus.DELETING:
        raise PermanentError("The zone is not being deleted.")
    try:
        result = driver_for(zone.node).dns_zone_delete(zone.origin)
    except NodeError as exc:
        if exc.permanent or job.attempts >= job.max_attempts:
            Zone.objects.filter(pk=zone_id).update(last_error=exc.message[:2000])
            raise PermanentError(exc.message) from exc
        raise
    with transaction.atomic():
        Zone.objects.filter(pk=zone_id, status=ZoneStatus.DELETING).delete()
    return result
