"""Database jobs. Each runs through its row's ``Lifecycle.run_job``: the row is locked (so jobs on
one object run one after the other and the last one applies the latest wanted state) and the server
is converged to it: create if absent, drop if present. A row marked ``removing`` is dropped on the
server, then deleted here. A row that is gone is skipped; an attempt that will be retried records
its error on the row; a removal that gives up stays ``removing`` (deleting again retries it) and
anything else becomes ``error``."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.utils import timezone

from apps.audit import services as audit
from apps.jobs.registry import handler
from apps.nodes.drivers import NodeError, driver_for

from . import crypto, services
from .models import Database, DatabaseGrant, DatabaseServer, DatabaseUser, ObjectStatus, ServerStatus

KEEP = {ObjectStatus.REMOVING}
OPTIONS = {"on_missing": "skip", "record_retry_errors": True}


def _secrets_checked(converge: Callable[..., dict]) -> Callable[..., dict]:
    """A stored secret that no key decrypts will not decrypt on a retry: a permanent error, with
    its own message, like a node's."""

    @wraps(converge)
    def run(obj, job_type: str) -> dict:
        try:
            return converge(obj, job_type)
        except crypto.UndecryptableSecret as exc:
            raise NodeError(str(exc), permanent=True) from exc

    return run


def _removed(obj, action: str) -> None:
    audit.deleted(obj, action)
    obj.delete()


@handler("database.server.check")
def server_check(job) -> dict:
    return services.servers.run_job(job, _server_check, **OPTIONS)


@_secrets_checked
def _server_check(server: DatabaseServer, job_type: str) -> dict:
    result = driver_for(server.node).db_check(services.server_spec(server))
    version = str(result.get("version", ""))[:120]
    DatabaseServer.objects.filter(pk=server.pk).update(status=ServerStatus.ACTIVE, version=version, last_error="")
    return result


@handler("database.sync")
def database_sync(job) -> dict:
    return services.databases.run_job(job, _database_sync, keep=KEEP, **OPTIONS)


@_secrets_checked
def _database_sync(database: Database, job_type: str) -> dict:
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
    return services.users.run_job(job, _user_sync, keep=KEEP, **OPTIONS)


@_secrets_checked
def _user_sync(user: DatabaseUser, job_type: str) -> dict:
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
    return services.grants.run_job(job, _grant_sync, keep=KEEP, **OPTIONS)


@_secrets_checked
def _grant_sync(grant: DatabaseGrant, job_type: str) -> dict:
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
