"""Hosting database writes. Every change on a database server is a job (apps/databases/jobs.py):
the service validates, writes the wanted state in one transaction with its audit event, and
enqueues the job that brings the server to it."""

from __future__ import annotations

import logging
import re

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.jobs.services import job_enqueue
from apps.nodes.models import Node
from apps.tenancy.scoping import all_tenants

from . import crypto, verifiers
from .models import Database, DatabaseGrant, DatabaseServer, DatabaseUser, Engine, ObjectStatus, ServerStatus

log = logging.getLogger(__name__)

# What the tenant names; the server gets ``<prefix><name>``, at most 63 characters (PostgreSQL's
# identifier limit, within MariaDB's 64 for databases and 80 for users).
PREFIX_LEN = 12  # "t" + 10 hex digits of the tenant id + "_"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,%d}$" % (62 - PREFIX_LEN))  # noqa: UP031
HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,253}[A-Za-z0-9])?$")
ADMIN_USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,80}$")

SERVER_FIELDS = ["node", "engine", "host", "port", "admin_user", "status", "version"]
DATABASE_FIELDS = ["server", "name", "full_name", "status"]
USER_FIELDS = ["server", "name", "full_name", "status", "password_changed_at"]
GRANT_FIELDS = ["database", "user", "status"]


def tenant_prefix(tenant) -> str:
    """Two tenants never collide on one server: every name there starts with the tenant's own."""
    return f"t{tenant.pk.hex[:10]}_"


def clean_name(value: str, field: str = "name") -> str:
    value = str(value or "")
    if not NAME_RE.match(value):
        raise InvalidInput(
            f"Use 1 to {63 - PREFIX_LEN} characters: a lower-case letter, then lower-case letters, digits or _.",
            field=field,
        )
    return value


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


def _clean_server(data: dict) -> dict:
    out = {}
    if "host" in data:
        host = str(data["host"] or "").strip().lower()
        if not HOST_RE.match(host):
            raise InvalidInput("Not a host name or address.", field="host")
        out["host"] = host
    if "port" in data:
        port = data["port"]
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidInput("A port from 1 to 65535.", field="port")
        out["port"] = port
    if "admin_user" in data:
        if not ADMIN_USER_RE.match(str(data["admin_user"] or "")):
            raise InvalidInput("Letters, digits and _ . @ - (at most 80).", field="admin_user")
        out["admin_user"] = data["admin_user"]
    if data.get("admin_password") is not None:
        password = str(data["admin_password"])
        if not password or any(c in password for c in "\0\r\n"):
            raise InvalidInput("A password without NUL or line breaks.", field="admin_password")
        out["admin_password_encrypted"] = crypto.encrypt(password)
    return out


def check_job(server: DatabaseServer, actor) -> None:
    job_enqueue(tenant=server.tenant, type="database.server.check", payload={"server": str(server.pk)}, actor=actor,
                obj=server)  # fmt: skip


@transaction.atomic
def server_create(*, tenant, node: Node, engine: str, host: str, port: int, admin_user: str, admin_password: str,
                  actor=None) -> DatabaseServer:  # fmt: skip
    if engine not in Engine.values:
        raise InvalidInput("postgresql or mariadb.", field="engine")
    if "db" not in (node.roles or []):
        raise InvalidInput("This node does not have the db role.", field="node")
    if not admin_password:
        raise InvalidInput("The admin password is required.", field="admin_password")
    fields = _clean_server({"host": host, "port": port, "admin_user": admin_user, "admin_password": admin_password})
    server = DatabaseServer(tenant=tenant, node=node, engine=engine, **fields)
    try:
        with transaction.atomic():
            server.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("This tenant has this server already.", field="host") from exc
    audit.record(action="database.server.create", obj=server, after=audit.snapshot(server, SERVER_FIELDS),
                 **audit.by(actor))  # fmt: skip
    check_job(server, actor)
    return server


@transaction.atomic
def server_update(*, server: DatabaseServer, data: dict, actor=None) -> DatabaseServer:
    server = DatabaseServer.objects.select_for_update().get(pk=server.pk)
    before = audit.snapshot(server, SERVER_FIELDS)
    fields = _clean_server(data)
    moved = (fields.get("host", server.host), fields.get("port", server.port)) != (server.host, server.port)
    if moved and (server.databases.exists() or server.users.exists()):
        raise Conflict("Databases live on this server: its address can change only while it is empty.",
                       code="server_in_use")  # fmt: skip
    for key, value in fields.items():
        setattr(server, key, value)
    server.status = ServerStatus.PENDING
    try:
        with transaction.atomic():
            server.save()
    except IntegrityError as exc:
        raise InvalidInput("This tenant has this server already.", field="host") from exc
    after = audit.snapshot(server, SERVER_FIELDS)
    if "admin_password_encrypted" in fields:
        after["admin_password"] = "changed"
    audit.record(action="database.server.update", obj=server, before=before, after=after, **audit.by(actor))
    check_job(server, actor)
    return server


@transaction.atomic
def server_delete(*, server: DatabaseServer, actor=None) -> None:
    server = DatabaseServer.objects.select_for_update().get(pk=server.pk)
    if server.databases.exists() or server.users.exists():
        raise Conflict("Drop its databases and users first.", code="server_in_use")
    audit.record(action="database.server.delete", obj=server, before=audit.snapshot(server, SERVER_FIELDS),
                 **audit.by(actor))  # fmt: skip
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


def _database_job(database: Database, actor) -> None:
    job_enqueue(tenant=database.tenant, type="database.sync", payload={"database": str(database.pk)}, actor=actor,
                obj=database)  # fmt: skip


@transaction.atomic
def database_create(*, tenant, server: DatabaseServer, name: str, actor=None) -> Database:
    name = clean_name(name)
    full_name = tenant_prefix(tenant) + name
    _check_free(Database, server, full_name, "database")
    database = Database(tenant=tenant, server=server, name=name, full_name=full_name)
    try:
        with transaction.atomic():
            database.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("A database of this name exists on this server.", field="name") from exc
    audit.record(action="database.create", obj=database, after=audit.snapshot(database, DATABASE_FIELDS),
                 **audit.by(actor))  # fmt: skip
    _database_job(database, actor)
    return database


@transaction.atomic
def database_drop(*, database: Database, confirm: str | None, actor=None) -> Database:
    """Irreversible: ``confirm`` must repeat the database's name (as created, or as on the server)."""
    database = Database.objects.select_for_update().get(pk=database.pk)
    if not isinstance(confirm, str) or confirm not in (database.name, database.full_name):
        raise InvalidInput(f'Dropping is irreversible: send {{"confirm": "{database.name}"}}.', field="confirm")
    before = audit.snapshot(database, DATABASE_FIELDS)
    database.status = ObjectStatus.REMOVING
    database.save(update_fields=["status", "updated_at"])
    audit.record(action="database.drop", obj=database, before=before, after=audit.snapshot(database, DATABASE_FIELDS),
                 **audit.by(actor))  # fmt: skip
    _database_job(database, actor)
    return database


# --- users -------------------------------------------------------------------------------------------


def _user_job(user: DatabaseUser, actor) -> None:
    job_enqueue(tenant=user.tenant, type="database.user.sync", payload={"user": str(user.pk)}, actor=actor,
                obj=user)  # fmt: skip


@transaction.atomic
def user_create(*, tenant, server: DatabaseServer, name: str, actor=None) -> tuple[DatabaseUser, str]:
    """Answers the user and its password, which is not kept: show it once."""
    name = clean_name(name)
    full_name = tenant_prefix(tenant) + name
    _check_free(DatabaseUser, server, full_name, "user")
    password = verifiers.new_password()
    user = DatabaseUser(tenant=tenant, server=server, name=name, full_name=full_name,
                        password_verifier=verifiers.verifier(server.engine, password),
                        password_changed_at=timezone.now())  # fmt: skip
    try:
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("A user of this name exists on this server.", field="name") from exc
    audit.record(action="database.user.create", obj=user, after=audit.snapshot(user, USER_FIELDS), **audit.by(actor))
    _user_job(user, actor)
    return user, password


@transaction.atomic
def user_rotate_password(*, user: DatabaseUser, actor=None) -> tuple[DatabaseUser, str]:
    user = DatabaseUser.objects.select_for_update().select_related("server").get(pk=user.pk)
    if user.status == ObjectStatus.REMOVING:
        raise Conflict("This user is being dropped.", code="removing")
    before = audit.snapshot(user, USER_FIELDS)
    password = verifiers.new_password()
    user.password_verifier = verifiers.verifier(user.server.engine, password)
    user.password_changed_at = timezone.now()
    user.status = ObjectStatus.PENDING
    user.save(update_fields=["password_verifier", "password_changed_at", "status", "updated_at"])
    audit.record(action="database.user.rotate_password", obj=user, before=before,
                 after={**audit.snapshot(user, USER_FIELDS), "password": "changed"}, **audit.by(actor))  # fmt: skip
    _user_job(user, actor)
    return user, password


@transaction.atomic
def user_delete(*, user: DatabaseUser, actor=None) -> DatabaseUser:
    """The login goes; in PostgreSQL, what it owns goes to the admin (data is kept)."""
    user = DatabaseUser.objects.select_for_update().get(pk=user.pk)
    before = audit.snapshot(user, USER_FIELDS)
    user.status = ObjectStatus.REMOVING
    user.save(update_fields=["status", "updated_at"])
    audit.record(action="database.user.delete", obj=user, before=before, after=audit.snapshot(user, USER_FIELDS),
                 **audit.by(actor))  # fmt: skip
    _user_job(user, actor)
    return user


# --- grants ------------------------------------------------------------------------------------------


def _grant_job(grant: DatabaseGrant, actor) -> None:
    job_enqueue(tenant=grant.tenant, type="database.grant.sync", payload={"grant": str(grant.pk)}, actor=actor,
                obj=grant)  # fmt: skip


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
    before = None if created else audit.snapshot(grant, GRANT_FIELDS)
    if not created:  # a revoke or a failed grant: want it granted again
        grant.status = ObjectStatus.PENDING
        grant.save(update_fields=["status", "updated_at"])
    audit.record(action="database.grant.create", obj=grant, before=before, after=audit.snapshot(grant, GRANT_FIELDS),
                 **audit.by(actor))  # fmt: skip
    _grant_job(grant, actor)
    return grant


@transaction.atomic
def grant_revoke(*, grant: DatabaseGrant, actor=None) -> DatabaseGrant:
    grant = DatabaseGrant.objects.select_for_update().get(pk=grant.pk)
    before = audit.snapshot(grant, GRANT_FIELDS)
    grant.status = ObjectStatus.REMOVING
    grant.save(update_fields=["status", "updated_at"])
    audit.record(action="database.grant.revoke", obj=grant, before=before, after=audit.snapshot(grant, GRANT_FIELDS),
                 **audit.by(actor))  # fmt: skip
    _grant_job(grant, actor)
    return grant
