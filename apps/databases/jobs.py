"""Database jobs. Each reads its row (locked, so jobs on one object run one after the other and
the last one applies the latest wanted state) and converges the server to it: create if absent,
drop if present. A row marked ``removing`` is dropped on the server, then deleted here."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.jobs.registry import PermanentError, handler
from apps.nodes.drivers import NodeError, driver_for

from . import crypto, services
from .models import Database, DatabaseGrant, DatabaseServer, DatabaseUser, ObjectStatus, ServerStatus


def _run(job, model, pk, body: Callable[[], dict]) -> dict:
    """Run ``body`` (which locks the row and works inside one transaction); on failure, record
    the reason on the row after the rollback. A removal that gives up stays ``removing``
    (deleting again retries it); anything else becomes ``error``."""
    try:
        with transaction.atomic():
            return body()
    except (NodeError, crypto.UndecryptableSecret) as exc:
        message = getattr(exc, "message", str(exc))[:2000]
        final = getattr(exc, "permanent", True) or job.attempts >= job.max_attempts
        fields = {"last_error": message}
        row = model.objects.filter(pk=pk)
        if final and row.exclude(status=ObjectStatus.REMOVING).exists():
            fields["status"] = ObjectStatus.ERROR
        row.update(**fields)
        if final:
            raise PermanentError(message) from exc
        raise


def _removed(obj, action: str) -> None:
    audit.deleted(obj, action)
    obj.delete()


@handler("database.server.check")
def server_check(job) -> dict:
    server = DatabaseServer.objects.select_related("node").filter(pk=job.payload.get("server")).first()
    if server is None:
        return {"skipped": "no such server"}
    try:
        result = driver_for(server.node).db_check(services.server_spec(server))
    except (NodeError, crypto.UndecryptableSecret) as exc:
        message = getattr(exc, "message", str(exc))
        final = getattr(exc, "permanent", True) or job.attempts >= job.max_attempts
        fields = {"last_error": message[:2000]}
        if final:
            fields["status"] = ServerStatus.ERROR
        DatabaseServer.objects.filter(pk=server.pk).update(**fields)
        if final:
            raise PermanentError(message) from exc
        raise
    version = str(result.get("version", ""))[:120]
    DatabaseServer.objects.filter(pk=server.pk).update(status=ServerStatus.ACTIVE, version=version, last_error="")
    return result


@handler("database.sync")
def database_sync(job) -> dict:
    return _run(job, Database, job.payload.get("database"), lambda: _database_sync(job))


def _database_sync(job) -> dict:
    database = (Database.objects.select_for_update(of=("self",)).select_related("server__node")
                .filter(pk=job.payload.get("database")).first())  # fmt: skip
    if database is None:
        return {"skipped": "gone"}
    server = database.server
    driver = driver_for(server.node)
    if database.status == ObjectStatus.REMOVING:
        users = sorted(database.grants.values_list("user__full_name", flat=True))
        result = driver.db_database_drop(services.server_spec(server), database.full_name, users)
        _removed(database, "database.dropped")
        return result
    result = driver.db_database_ensure(services.server_spec(server), database.full_name)
    Database.objects.filter(pk=database.pk).update(status=ObjectStatus.ACTIVE, last_error="",
                                                   size_bytes=result.get("size_bytes"),
                                                   size_updated_at=timezone.now())  # fmt: skip
    return result


@handler("database.user.sync")
def user_sync(job) -> dict:
    return _run(job, DatabaseUser, job.payload.get("user"), lambda: _user_sync(job))


def _user_sync(job) -> dict:
    user = (DatabaseUser.objects.select_for_update(of=("self",)).select_related("server__node")
            .filter(pk=job.payload.get("user")).first())  # fmt: skip
    if user is None:
        return {"skipped": "gone"}
    server = user.server
    driver = driver_for(server.node)
    if user.status == ObjectStatus.REMOVING:
        databases = sorted(user.grants.values_list("database__full_name", flat=True))
        result = driver.db_user_drop(services.server_spec(server), user.full_name, databases)
        _removed(user, "database.user.dropped")
        return result
    result = driver.db_user_ensure(services.server_spec(server), user.full_name, user.password_verifier)
    DatabaseUser.objects.filter(pk=user.pk).update(status=ObjectStatus.ACTIVE, last_error="")
    return result


@handler("database.grant.sync")
def grant_sync(job) -> dict:
    return _run(job, DatabaseGrant, job.payload.get("grant"), lambda: _grant_sync(job))


def _grant_sync(job) -> dict:
    grant = (DatabaseGrant.objects.select_for_update(of=("self",))
             .select_related("database__server__node", "user").filter(pk=job.payload.get("grant")).first())  # fmt: skip
    if grant is None:
        return {"skipped": "gone"}
    server = grant.database.server
    driver = driver_for(server.node)
    database, user = grant.database.full_name, grant.user.full_name
    if grant.status == ObjectStatus.REMOVING:
        result = driver.db_revoke(services.server_spec(server), database, user)
        _removed(grant, "database.grant.revoked")
        return result
    result = driver.db_grant(services.server_spec(server), database, user)
    DatabaseGrant.objects.filter(pk=grant.pk).update(status=ObjectStatus.ACTIVE, last_error="")
    return result
