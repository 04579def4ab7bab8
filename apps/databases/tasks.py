"""Sizes of the databases, read from each server every ``MPANEL_DATABASE_SIZE_INTERVAL`` seconds
(Celery beat; ``manage.py run_jobs`` in the embedded default). Reading changes nothing on the
server, so it is a plain task, not a job; a server that does not answer keeps its last sizes."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from apps.nodes.drivers import NodeError, driver_for
from apps.tenancy.scoping import all_tenants

from . import crypto, services
from .models import Database, DatabaseServer, ObjectStatus

log = logging.getLogger(__name__)


def refresh_sizes() -> dict:
    """One query per server on the node side, one bulk update per server here."""
    updated = failed = 0
    with all_tenants():
        servers = (
            DatabaseServer.all_tenants.select_related("node").filter(databases__status=ObjectStatus.ACTIVE).distinct()
        )
        for server in servers:
            databases = list(Database.all_tenants.filter(server=server, status=ObjectStatus.ACTIVE))
            try:
                driver = driver_for(server.node, timeout=settings.MPANEL_NODE_READ_TIMEOUT)
                sizes = driver.db_sizes(services.server_spec(server), [d.full_name for d in databases])
            except (NodeError, crypto.UndecryptableSecret) as exc:
                failed += 1
                log.warning("database sizes of %s: %s", server, getattr(exc, "message", exc))
                continue
            now = timezone.now()
            for database in databases:
                database.size_bytes = sizes.get(database.full_name)
                database.size_updated_at = now
            Database.all_tenants.bulk_update(databases, ["size_bytes", "size_updated_at"])
            updated += len(databases)
    return {"updated": updated, "servers_failed": failed}


@shared_task(name="databases.sizes")
def sizes() -> dict:
    return refresh_sizes()
