"""Hosting database writes. Every change on a database server is a job (apps/databases/jobs.py):
the service validates, writes the wanted state in one transaction with its audit event, and
enqueues the job that brings the server to it."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.limits import check_limit
from apps.jobs.lifecycle import Lifecycle, Move
from apps.nodes.drivers import NodeError, driver_for
from apps.nodes.models import Node
from apps.tenancy.scoping import all_tenants

from . import crypto, passwords, validators
from .models import Database, DatabaseGrant, DatabaseServer, DatabaseUser, Engine, ObjectStatus, ServerStatus

log = logging.getLogger(__name__)

# Each row's job converges its server to the row's status (apps/databases/jobs.py): ``pending`` is
# made there, ``removing`` is dropped there and then the row goes. Dropping, deleting and revoking may
# start from any state (asking again retries a removal that failed).
servers: Lifecycle[DatabaseServer] = Lifecycle(model=DatabaseServer, kind="database.server", payload_key="server")
databases: Lifecycle[Database] = Lifecycle(
    model=Database,
    kind="database",
    payload_key="database",
    related=("server", "tenant"),
    moves={"drop": Move(to=ObjectStatus.REMOVING, refusal="This database is {status}.", job="database.sync")},
)
users: Lifecycle[DatabaseUser] = Lifecycle(
    model=DatabaseUser,
    kind="database.user",
    payload_key="user",
    related=("server", "tenant"),
    moves={
        "delete": Move(to=ObjectStatus.REMOVING, refusal="This user is {status}.", job="database.user.sync"),
        "rotate_password": Move(
            to=ObjectStatus.PENDING,
            not_from={ObjectStatus.REMOVING},
            refusal="This user is being dropped.",
            code="removing",
            job="database.user.sync",
        ),
    },
)
grants: Lifecycle[DatabaseGrant] = Lifecycle(
    model=DatabaseGrant,
    kind="database.grant",
    payload_key="grant",
    related=("tenant",),
    moves={
        "revoke": Move(to=ObjectStatus.REMOVING, refusal="This grant is {status}.", job="database.grant.sync"),
        # A revoked or failed grant asked for again (an active or pending one is answered as it is).
        "grant_again": Move(
            to=ObjectStatus.PENDING,
            sources={ObjectStatus.REMOVING, ObjectStatus.ERROR},
            refusal="This grant is {status}.",
            action="database.grant.create",
            job="database.grant.sync",
        ),
    },
)


def tenant_prefix(tenant) -> str:
    """Two tenants never collide on one server: every name there starts with the tenant's own."""
    return f"t{tenant.pk.hex[:10]}_"


# --- servers ---------------------------------------------------------------------------------------


def server_spec(server: DatabaseServer) -> dict:
    """What the node needs to act as the admin. Built for one driver call; never stored or logged."""
    return {
        "engine": server.engine,
        "host": server.host,
        "port": server.port,
        "admin_user": server.admin_user,
        "admin_password": crypto.decrypt(server.admin_password_encrypted),
    }


def check_job(server: DatabaseServer, actor) -> None:
    servers.enqueue(server, "database.server.check", actor=actor)


@transaction.atomic
def server_create(*, tenant, node: Node, engine: str, host: str, port: int, admin_user: str, admin_password: str,
                  actor=None) -> DatabaseServer:  # fmt: skip
    if engine not in Engine.values:
        raise InvalidInput("postgresql or mariadb.", field="engine")
    if "db" not in (node.roles or []):
        raise InvalidInput("This node does not have the db role.", field="node")
    if not admin_password:
        raise InvalidInput("The admin password is required.", field="admin_password")
    fields = validators.clean_server({"host": host, "port": port, "admin_user": admin_user,
                                      "admin_password": admin_password})  # fmt: skip
    server = DatabaseServer(tenant=tenant, node=node, engine=engine, **fields)
    try:
        with transaction.atomic():
            server.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("This tenant has this server already.", field="host") from exc
    audit.created(server, "database.server.create", actor=actor)
    check_job(server, actor)
    return server


@transaction.atomic
def server_update(*, server: DatabaseServer, data: dict, actor=None) -> DatabaseServer:
    server = servers.locked(server)
    fields = validators.clean_server(data)
    moved = (fields.get("host", server.host), fields.get("port", server.port)) != (server.host, server.port)
    if moved and (server.databases.exists() or server.users.exists()):
        raise Conflict("Databases live on this server: its address can change only while it is empty.",
                       code="server_in_use")  # fmt: skip
    with audit.change(server, "database.server.update", actor=actor) as change:
        for key, value in fields.items():
            setattr(server, key, value)
        server.status = ServerStatus.PENDING
        try:
            with transaction.atomic():
                server.save()
        except IntegrityError as exc:
            raise InvalidInput("This tenant has this server already.", field="host") from exc
        if "admin_password_encrypted" in fields:
            change.mark(admin_password="changed")  # the password is never recorded; that it changed is
    check_job(server, actor)
    return server


@transaction.atomic
def server_delete(*, server: DatabaseServer, actor=None) -> None:
    server = servers.locked(server)
    if server.databases.exists() or server.users.exists():
        raise Conflict("Drop its databases and users first.", code="server_in_use")
    audit.deleted(server, "database.server.delete", actor=actor)
    server.delete()


def _check_free(model, server: DatabaseServer, full_name: str, what: str) -> None:
    """The same server may be registered by several tenants (same engine, host and port): a
    name is one tenant's there. The prefix already separates tenants; this makes it certain."""
    with all_tenants():
        taken = model.all_tenants.filter(server__engine=server.engine, server__host=server.host,
                                         server__port=server.port, full_name=full_name).exists()  # fmt: skip
    if taken:
        raise Conflict(f"A {what} of this name exists on this server.", code="name_taken")


# --- databases ---------------------------------------------------------------------------------------


@transaction.atomic
def database_create(*, tenant, server: DatabaseServer, name: str, customer=None, actor=None) -> Database:
    name = validators.clean_name(name)
    full_name = tenant_prefix(tenant) + name
    _check_free(Database, server, full_name, "database")
    database = Database(tenant=tenant, server=server, name=name, full_name=full_name, customer=customer)
    try:
        with transaction.atomic():
            database.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("A database of this name exists on this server.", field="name") from exc
    # The customer's plan limits (apps.common.limits): with the row saved, so it is counted.
    check_limit(database.tenant_id, "databases", customer_id=database.customer_id, obj=database)
    audit.created(database, "database.create", actor=actor)
    databases.enqueue(database, "database.sync", actor=actor)
    return database


@transaction.atomic
def database_drop(*, database: Database, confirm: str | None, actor=None) -> Database:
    """Irreversible: ``confirm`` must repeat the database's name (as created, or as on the server)."""
    database = databases.locked(database)
    if not isinstance(confirm, str) or confirm not in (database.name, database.full_name):
        raise InvalidInput(f'Dropping is irreversible: send {{"confirm": "{database.name}"}}.', field="confirm")
    return databases.move(database, "drop", actor=actor, lock=False)


# --- users -------------------------------------------------------------------------------------------


@transaction.atomic
def user_create(*, tenant, server: DatabaseServer, name: str, actor=None) -> tuple[DatabaseUser, str]:
    """Answers the user and its password, which is not kept: show it once."""
    name = validators.clean_name(name)
    full_name = tenant_prefix(tenant) + name
    _check_free(DatabaseUser, server, full_name, "user")
    password = passwords.new_password()
    user = DatabaseUser(tenant=tenant, server=server, name=name, full_name=full_name,
                        password_verifier=passwords.verifier(server.engine, password),
                        password_changed_at=timezone.now())  # fmt: skip
    try:
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("A user of this name exists on this server.", field="name") from exc
    audit.created(user, "database.user.create", actor=actor)
    users.enqueue(user, "database.user.sync", actor=actor)
    return user, password


@transaction.atomic
def user_rotate_password(*, user: DatabaseUser, actor=None) -> tuple[DatabaseUser, str]:
    user = users.locked(user)
    move = users.check(user, "rotate_password")
    # Not users.move: the audit event also says that the password changed (never what it is).
    with audit.change(user, "database.user.rotate_password", actor=actor) as change:
        change.mark(password="changed")
        password = passwords.new_password()
        user.password_verifier = passwords.verifier(user.server.engine, password)
        user.password_changed_at = timezone.now()
        user.status = move.to
        user.save(update_fields=["password_verifier", "password_changed_at", "status", "updated_at"])
    users.enqueue(user, move.job, actor=actor)
    return user, password


@transaction.atomic
def user_delete(*, user: DatabaseUser, actor=None) -> DatabaseUser:
    """The login goes; in PostgreSQL, what it owns goes to the admin (data is kept)."""
    return users.move(user, "delete", actor=actor)


# --- grants ------------------------------------------------------------------------------------------


@transaction.atomic
def grant_create(*, database: Database, user: DatabaseUser, actor=None) -> DatabaseGrant:
    """All privileges on ``database`` for ``user``. Granting again is answered with the same grant."""
    if user.server_id != database.server_id:
        raise InvalidInput("The user and the database are on different servers.", field="user")
    if ObjectStatus.REMOVING in (database.status, user.status):
        raise Conflict("The database or the user is being dropped.", code="removing")
    grant, created = DatabaseGrant.objects.select_for_update().get_or_create(
        tenant=database.tenant, database=database, user=user
    )
    if not created and grant.status in (ObjectStatus.ACTIVE, ObjectStatus.PENDING):
        return grant
    if not created:  # a revoke or a failed grant: want it granted again (the row is locked above)
        return grants.move(grant, "grant_again", actor=actor, lock=False)
    audit.created(grant, "database.grant.create", actor=actor)
    grants.enqueue(grant, "database.grant.sync", actor=actor)
    return grant


@transaction.atomic
def grant_revoke(*, grant: DatabaseGrant, actor=None) -> DatabaseGrant:
    return grants.move(grant, "revoke", actor=actor)


# --- sizes -------------------------------------------------------------------------------------------


def refresh_sizes() -> dict:
    """Read every active database's size from its server (the ``databases.sizes`` beat task).
    Reading changes nothing on the server, so it is a plain task, not a job; a server that does not
    answer keeps its last sizes. One query per server on the node side, one bulk update per server here."""
    updated = failed = 0
    with all_tenants():
        servers = (
            DatabaseServer.all_tenants.select_related("node").filter(databases__status=ObjectStatus.ACTIVE).distinct()
        )
        for server in servers:
            active = list(Database.all_tenants.filter(server=server, status=ObjectStatus.ACTIVE))
            try:
                driver = driver_for(server.node, timeout=settings.MPANEL_NODE_READ_TIMEOUT)
                sizes = driver.db_sizes(server_spec(server), [d.full_name for d in active])
            except (NodeError, crypto.UndecryptableSecret) as exc:
                failed += 1
                log.warning("database sizes of %s: %s", server, getattr(exc, "message", exc))
                continue
            now = timezone.now()
            for database in active:
                database.size_bytes = sizes.get(database.full_name)
                database.size_updated_at = now
            Database.all_tenants.bulk_update(active, ["size_bytes", "size_updated_at"])
            updated += len(active)
    return {"updated": updated, "servers_failed": failed}
