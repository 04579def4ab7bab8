"""Hosting databases: the API matrix of servers, databases, users and grants; and end to end
through the API against a real MariaDB and a real PostgreSQL (tests/databases_support.py): log in
as the user with the password answered once, make a table; another tenant's user is refused;
rotation, revoke, sizes, drop with and without confirmation, bad names; the agent transport."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.databases import crypto, services
from apps.databases.api import DatabaseGrantViewSet, DatabaseServerViewSet, DatabaseUserViewSet, DatabaseViewSet
from apps.databases.models import Database, DatabaseGrant, DatabaseServer, DatabaseUser, ObjectStatus
from apps.jobs import services as job_services
from apps.jobs.models import Job, JobAttempt
from apps.nodes.models import Node
from apps.tenancy.roles import Role
from tests.api_mixin import ApiTestCase
from tests.conftest import client_for
from tests.databases_support import mariadb_server, postgres_server  # noqa: F401
from tests.infrastructure.test_agent import agent_node  # noqa: F401

READ_MEMBER = {"list": Role.MEMBER, "retrieve": Role.MEMBER, "create": Role.ADMIN, "destroy": Role.ADMIN}


@pytest.fixture
def no_dispatch(monkeypatch):
    monkeypatch.setattr(job_services, "dispatch", lambda *args, **kwargs: None)


def db_node(fx, hostname="db-1") -> Node:
    with fx.scope():
        node = Node.objects.filter(hostname=hostname).first()
        return node or Node.objects.create(
            tenant=fx.tenant, hostname=hostname, roles=["db"], vcpu=1, memory_mb=1024, disk_gb=10, max_pods=0
        )


def server_in(fx, port=5432) -> DatabaseServer:
    with fx.scope():
        found = DatabaseServer.objects.filter(port=port).first()
        return found or services.server_create(tenant=fx.tenant, node=db_node(fx), engine="postgresql",
                                               host="db.example", port=port, admin_user="admin",
                                               admin_password="admin-secret-pw")  # fmt: skip


def database_in(fx, name="main") -> Database:
    with fx.scope():
        found = Database.objects.filter(name=name).first()
        return found or services.database_create(tenant=fx.tenant, server=server_in(fx), name=name)


@pytest.mark.usefixtures("no_dispatch")
class TestDatabaseServerApi(ApiTestCase):
    viewset = DatabaseServerViewSet
    basename = "database-server"
    roles = {a: Role.ADMIN for a in ("list", "retrieve", "create", "update", "partial_update", "destroy")}

    def make(self, fx, seq):
        return services.server_create(tenant=fx.tenant, node=db_node(fx), engine="mariadb", host=f"h{seq}.example",
                                      port=3306, admin_user="root", admin_password="pw")  # fmt: skip

    def create_payload(self, fx, seq):
        return {"node": str(db_node(fx).pk), "engine": "postgresql", "host": f"n{seq}.example", "port": 5432,
                "admin_user": "postgres", "admin_password": "secret"}  # fmt: skip

    def update_payload(self, fx, obj, seq):
        return {"host": f"u{seq}.example", "port": 3307, "admin_user": "root", "admin_password": "new"}


@pytest.mark.usefixtures("no_dispatch")
class TestDatabaseApi(ApiTestCase):
    viewset = DatabaseViewSet
    basename = "database"
    roles = READ_MEMBER
    success = {"destroy": 202}

    def make(self, fx, seq):
        return services.database_create(tenant=fx.tenant, server=server_in(fx), name=f"db{seq}")

    def create_payload(self, fx, seq):
        return {"server": str(server_in(fx).pk), "name": f"new{seq}"}

    def call(self, client, fx, action, obj=None, data=None):
        if action == "destroy" and data is None:
            return client.delete(self.url(fx, action, obj), {"confirm": obj.name}, format="json")
        return super().call(client, fx, action, obj, data)


@pytest.mark.usefixtures("no_dispatch")
class TestDatabaseUserApi(ApiTestCase):
    viewset = DatabaseUserViewSet
    basename = "database-user"
    roles = READ_MEMBER
    success = {"destroy": 202}

    def make(self, fx, seq):
        return services.user_create(tenant=fx.tenant, server=server_in(fx), name=f"u{seq}")[0]

    def create_payload(self, fx, seq):
        return {"server": str(server_in(fx).pk), "name": f"new{seq}"}

    def test_idempotent_create_replays_first_answer(self, tenant_a):
        """A replay answers the same user but not the password again: it is shown once, and the
        idempotency record does not keep it."""
        client = client_for(tenant_a.owner, tenant_a.tenant)
        payload = self.create_payload(tenant_a, 1)
        url = self.url(tenant_a, "create")
        first = client.post(url, payload, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
        second = client.post(url, payload, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
        assert first.status_code == second.status_code == 201, first.content
        assert second["Idempotent-Replayed"] == "true"
        assert len(first.json()["password"]) >= 32 and second.json()["password"] is None
        assert {k: v for k, v in first.json().items() if k != "password"} == {
            k: v for k, v in second.json().items() if k != "password"
        }
        assert DatabaseUser.all_tenants.filter(tenant=tenant_a.tenant).count() == 1


@pytest.mark.usefixtures("no_dispatch")
class TestDatabaseGrantApi(ApiTestCase):
    viewset = DatabaseGrantViewSet
    basename = "database-grant"
    roles = READ_MEMBER
    success = {"destroy": 202}

    def url_kwargs(self, fx):
        return {"database_pk": str(database_in(fx).pk)}

    def make(self, fx, seq):
        user, _ = services.user_create(tenant=fx.tenant, server=server_in(fx), name=f"g{seq}")
        return services.grant_create(database=database_in(fx), user=user)

    def create_payload(self, fx, seq):
        with fx.scope():
            user, _ = services.user_create(tenant=fx.tenant, server=server_in(fx), name=f"p{seq}")
        return {"user": str(user.pk)}


# --- rules without a server ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch")
class TestRules:
    def test_the_admin_password_is_encrypted_and_never_answered_or_audited(self, tenant_a):
        client = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        secret = "Very-Secret-Admin-Pw-42"
        payload = {"node": str(db_node(tenant_a).pk), "engine": "mariadb", "host": "DB.Example", "port": 3306,
                   "admin_user": "root", "admin_password": secret}  # fmt: skip
        response = client.post(reverse("database-server-list"), payload, format="json")
        assert response.status_code == 201, response.content
        assert secret not in response.content.decode() and response.json()["host"] == "db.example"
        server = DatabaseServer.all_tenants.get(pk=response.json()["id"])
        assert secret not in server.admin_password_encrypted
        assert crypto.decrypt(server.admin_password_encrypted) == secret
        patched = client.patch(reverse("database-server-detail", kwargs={"pk": server.pk}),
                               {"admin_password": secret + "2"}, format="json")  # fmt: skip
        assert patched.status_code == 200 and secret not in patched.content.decode()
        for listing in (client.get(reverse("database-server-list")), client.get(reverse("audit-list"))):
            assert secret not in listing.content.decode()
        stored = json.dumps(list(AuditEvent.objects.values("changes", "object_repr")), default=str)
        stored += json.dumps(list(Job.all_tenants.values("payload")), default=str)
        assert secret not in stored and server.admin_password_encrypted not in stored

    def test_members_cannot_see_servers_and_a_node_needs_the_db_role(self, tenant_a):
        server_in(tenant_a)
        member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant)
        assert member.get(reverse("database-server-list")).status_code == 403
        with tenant_a.scope():
            web = Node.objects.create(tenant=tenant_a.tenant, hostname="web-1", roles=["web"], vcpu=1, memory_mb=512,
                                      disk_gb=1, max_pods=0)  # fmt: skip
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        response = admin.post(reverse("database-server-list"), {"node": str(web.pk), "engine": "mariadb",
                              "host": "x.example", "port": 3306, "admin_user": "root", "admin_password": "pw"},
                              format="json")  # fmt: skip
        assert response.status_code == 400 and "node" in response.json()

    def test_a_changed_secret_key_asks_for_the_password_again(self, tenant_a, settings):
        server = server_in(tenant_a)
        settings.SECRET_KEY = "another-key-entirely"
        with pytest.raises(crypto.UndecryptableSecret):
            services.server_spec(server)
        settings.SECRET_KEY_FALLBACKS = [*settings.SECRET_KEY_FALLBACKS, "x"]  # fallbacks are tried too
        with pytest.raises(crypto.UndecryptableSecret):
            services.server_spec(server)

    def test_a_server_with_databases_is_not_deleted_or_moved(self, tenant_a):
        database = database_in(tenant_a)
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        url = reverse("database-server-detail", kwargs={"pk": database.server_id})
        assert admin.delete(url).status_code == 409
        assert admin.patch(url, {"port": 6543}, format="json").status_code == 409
        assert admin.patch(url, {"admin_password": "rotated"}, format="json").status_code == 200

    def test_server_errors_are_shown_to_admins_only(self, tenant_a):
        database = database_in(tenant_a)
        Database.all_tenants.filter(pk=database.pk).update(last_error="cannot connect to db.example as admin")
        url = reverse("database-detail", kwargs={"pk": database.pk})
        member = client_for(tenant_a.users[Role.MEMBER], tenant_a.tenant).get(url).json()
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant).get(url).json()
        assert "last_error" not in member and member["name"] == "main"
        assert admin["last_error"].startswith("cannot connect")

    def test_grants_stay_on_one_server_and_repeat_as_one(self, tenant_a):
        database = database_in(tenant_a)
        with tenant_a.scope():
            other = services.server_create(tenant=tenant_a.tenant, node=db_node(tenant_a), engine="mariadb",
                                           host="db.example", port=3306, admin_user="a",
                                           admin_password="b")  # fmt: skip
            stranger, _ = services.user_create(tenant=tenant_a.tenant, server=other, name="stranger")
            local, _ = services.user_create(tenant=tenant_a.tenant, server=database.server, name="local")
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        url = reverse("database-grant-list", kwargs={"database_pk": database.pk})
        assert admin.post(url, {"user": str(stranger.pk)}, format="json").status_code == 400
        first = admin.post(url, {"user": str(local.pk)}, format="json")
        again = admin.post(url, {"user": str(local.pk)}, format="json")
        assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]

    def test_the_declared_moves_audit_and_enqueue_as_before(self, tenant_a):
        """apps/databases/services.py's Lifecycles: a removing user cannot get a new password (409
        "removing"); a revoked grant asked again is pending, audited as a create, with its job."""
        database = database_in(tenant_a)
        with tenant_a.scope():
            user, _ = services.user_create(tenant=tenant_a.tenant, server=database.server, name="mover")
        admin = client_for(tenant_a.users[Role.ADMIN], tenant_a.tenant)
        grants_url = reverse("database-grant-list", kwargs={"database_pk": database.pk})
        grant = admin.post(grants_url, {"user": str(user.pk)}, format="json").json()
        revoked = admin.delete(reverse("database-grant-detail", kwargs={"database_pk": database.pk, "pk": grant["id"]}))
        assert revoked.status_code == 202 and revoked.json()["status"] == "removing"
        again = admin.post(grants_url, {"user": str(user.pk)}, format="json")
        assert again.status_code == 201 and again.json()["id"] == grant["id"] and again.json()["status"] == "pending"
        regrant = AuditEvent.objects.filter(object_id=grant["id"]).order_by("created_at").last()
        assert (regrant.action, regrant.changes) == ("database.grant.create", {"status": ["removing", "pending"]})
        jobs = Job.all_tenants.filter(object_id=grant["id"]).order_by("created_at")
        assert [(j.type, j.payload) for j in jobs] == [("database.grant.sync", {"grant": grant["id"]})] * 3
        dropped = admin.delete(reverse("database-user-detail", kwargs={"pk": user.pk}))
        assert dropped.status_code == 202 and dropped.json()["status"] == "removing"
        rotate = admin.post(reverse("database-user-rotate-password", kwargs={"pk": user.pk}))
        assert rotate.status_code == 409 and rotate.json()["code"] == "removing", rotate.content
        events = AuditEvent.objects.filter(object_id=str(user.pk)).order_by("created_at")
        assert [e.action for e in events] == ["database.user.create", "database.user.delete"]
        assert events.last().changes == {"status": ["pending", "removing"]}


# --- end to end on real servers ------------------------------------------------------------------


def _server(request, engine: str):
    return request.getfixturevalue("mariadb_server" if engine == "mariadb" else "postgres_server")


class Flow:
    """API calls whose jobs run when the request's transaction commits (eager jobs)."""

    def __init__(self, capture, fx):
        self.capture, self.fx = capture, fx
        self.client = client_for(fx.users[Role.ADMIN], fx.tenant)

    def __call__(self, method: str, url: str, data=None):
        with self.capture(execute=True):
            return getattr(self.client, method)(url, data, format="json")

    def register(self, db, node_name="db-1") -> dict:
        response = self("post", reverse("database-server-list"), {
            "node": str(db_node(self.fx, node_name).pk), "engine": db.engine, "host": db.host, "port": db.port,
            "admin_user": db.admin_user, "admin_password": db.admin_password})  # fmt: skip
        assert response.status_code == 201, response.content
        server = self("get", reverse("database-server-detail", kwargs={"pk": response.json()["id"]})).json()
        assert server["status"] == "active" and server["version"], server
        return server

    def create(self, kind: str, server: dict, name: str) -> dict:
        url = reverse("database-list" if kind == "database" else "database-user-list")
        response = self("post", url, {"server": server["id"], "name": name})
        assert response.status_code == 201, response.content
        return response.json()

    def grant(self, database: dict, user: dict):
        url = reverse("database-grant-list", kwargs={"database_pk": database["id"]})
        response = self("post", url, {"user": user["id"]})
        assert response.status_code == 201, response.content
        return response.json()


def refused(db, user: str, password: str, database: str | None = None) -> bool:
    try:
        db.connect(user, password, database).close()
    except db.errors():
        return True
    return False


def make_table(db, user: str, password: str, database: str) -> None:
    conn = db.connect(user, password, database)
    try:
        statements = ["CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50))"]
        statements.append("INSERT INTO items VALUES " + ", ".join(f"({i}, 'item {i}')" for i in range(1, 201)))
        if db.engine == "postgresql":
            for sql in statements:
                conn.execute(sql)
            assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 200
        else:
            with conn.cursor() as cur:
                for sql in statements:
                    cur.execute(sql)
                cur.execute("SELECT count(*) FROM items")
                assert cur.fetchone()[0] == 200
    finally:
        conn.close()


@pytest.mark.django_db
@pytest.mark.parametrize("engine", ["mariadb", "postgresql"])
def test_end_to_end_on_a_real_server(engine, request, tenant_a, tenant_b, django_capture_on_commit_callbacks):
    db = _server(request, engine)
    a, b = Flow(django_capture_on_commit_callbacks, tenant_a), Flow(django_capture_on_commit_callbacks, tenant_b)
    server_a, server_b = a.register(db), b.register(db)

    # Tenant A: a database and a user, granted; the user logs in with the password answered once.
    shop = a.create("database", server_a, "shop")
    assert shop["full_name"] == services.tenant_prefix(tenant_a.tenant) + "shop"
    assert a("get", reverse("database-detail", kwargs={"pk": shop["id"]})).json()["status"] == "active"
    assert shop["full_name"] in db.databases()
    app = a.create("user", server_a, "app")
    password = app["password"]
    assert len(password) >= 32 and app["full_name"] in db.users()
    shown = a("get", reverse("database-user-detail", kwargs={"pk": app["id"]})).json()
    assert "password" not in shown and shown["status"] == "active"
    stored = DatabaseUser.all_tenants.get(pk=app["id"]).password_verifier
    assert password not in stored and stored.startswith("SCRAM-SHA-256$" if engine == "postgresql" else "*")
    assert refused(db, app["full_name"], password, shop["full_name"]), "no grant yet, yet the user got in"
    grant = a.grant(shop, app)
    assert DatabaseGrant.all_tenants.get(pk=grant["id"]).status == ObjectStatus.ACTIVE
    make_table(db, app["full_name"], password, shop["full_name"])

    # The same names in tenant B are other names on the server; B's user cannot use A's database.
    b_shop = b.create("database", server_b, "shop")
    b_app = b.create("user", server_b, "app")
    b.grant(b_shop, b_app)
    assert b_app["full_name"] != app["full_name"] and b_shop["full_name"] != shop["full_name"]
    assert refused(db, b_app["full_name"], b_app["password"], shop["full_name"])
    assert not refused(db, b_app["full_name"], b_app["password"], b_shop["full_name"])
    assert b("get", reverse("database-detail", kwargs={"pk": shop["id"]})).status_code == 404

    # The size is read from the server (a periodic task), one round trip per server.
    before = Database.all_tenants.get(pk=shop["id"]).size_bytes
    assert services.refresh_sizes()["servers_failed"] == 0
    listed = a("get", reverse("database-list")).json()["results"]
    size = next(d["size_bytes"] for d in listed if d["id"] == shop["id"])
    assert size and size > 0 and (engine == "postgresql" or size > (before or 0)), (before, size)

    # Rotation: the old password stops working, the new one works; neither is kept.
    rotated = a("post", reverse("database-user-rotate-password", kwargs={"pk": app["id"]}))
    assert rotated.status_code == 200, rotated.content
    new_password = rotated.json()["password"]
    assert new_password != password
    assert refused(db, app["full_name"], password, shop["full_name"])
    assert not refused(db, app["full_name"], new_password, shop["full_name"])
    everything = json.dumps([list(AuditEvent.objects.values("changes", "object_repr")),
                             list(Job.all_tenants.values("payload")), list(JobAttempt.objects.values("error"))],
                            default=str)  # fmt: skip
    for secret in (password, new_password, db.admin_password):
        assert secret not in everything

    # Revoke: the user can no longer use the database.
    revoke = a("delete", reverse("database-grant-detail", kwargs={"database_pk": shop["id"], "pk": grant["id"]}))
    assert revoke.status_code == 202
    assert not DatabaseGrant.all_tenants.filter(pk=grant["id"]).exists()
    assert refused(db, app["full_name"], new_password, shop["full_name"])
    a.grant(shop, app)  # granted again for the drop below (MariaDB: its grant must go with the database)

    # Bad names: 400, and nothing on the server.
    on_server = db.databases(), db.users()
    for name in ["Shop", "1shop", "sh-op", "sh op", "x" * 52, "a;drop", "", "ä"]:
        for kind in ("database-list", "database-user-list"):
            response = a("post", reverse(kind), {"server": server_a["id"], "name": name})
            assert response.status_code == 400, (name, response.content)
    assert (db.databases(), db.users()) == on_server

    # Drop: the name must be confirmed (400 and nothing dropped), then it is gone from the server.
    url = reverse("database-detail", kwargs={"pk": shop["id"]})
    for wrong in [{}, {"confirm": "sho"}, {"confirm": b_shop["full_name"]}]:
        assert a("delete", url, wrong).status_code == 400
    assert shop["full_name"] in db.databases() and Database.all_tenants.filter(pk=shop["id"]).exists()
    dropped = a("delete", url, {"confirm": "shop"})
    assert dropped.status_code == 202 and dropped.json()["status"] == "removing"
    assert shop["full_name"] not in db.databases()
    assert a("get", url).status_code == 404
    assert AuditEvent.objects.filter(action="database.dropped", object_id=shop["id"]).exists()
    if engine == "mariadb":  # no grant left behind for a database made later under that name
        assert not db.query("SELECT 1 FROM mysql.db WHERE User = %s", [app["full_name"]])
    assert b_shop["full_name"] in db.databases()

    # Deleting the user drops the login.
    gone = a("delete", reverse("database-user-detail", kwargs={"pk": app["id"]}))
    assert gone.status_code == 202
    assert app["full_name"] not in db.users()
    assert refused(db, app["full_name"], new_password)
    # Tenant B cleans up (roles are cluster-wide in PostgreSQL; the server lives for the session).
    b("delete", reverse("database-detail", kwargs={"pk": b_shop["id"]}), {"confirm": "shop"})
    b("delete", reverse("database-user-detail", kwargs={"pk": b_app["id"]}))
    assert b_shop["full_name"] not in db.databases() and b_app["full_name"] not in db.users()


@pytest.mark.django_db
def test_a_wrong_admin_password_marks_the_server_in_error(tenant_a, mariadb_server, django_capture_on_commit_callbacks):  # noqa: F811
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    response = flow("post", reverse("database-server-list"), {
        "node": str(db_node(tenant_a).pk), "engine": "mariadb", "host": "127.0.0.1", "port": mariadb_server.port,
        "admin_user": mariadb_server.admin_user, "admin_password": "not-the-password"})  # fmt: skip
    assert response.status_code == 201
    server = DatabaseServer.all_tenants.get(pk=response.json()["id"])
    # The first attempt is retried with backoff: the reason is on the row at once.
    assert "Access denied" in server.last_error and "not-the-password" not in server.last_error


@pytest.mark.django_db
def test_through_the_agent_transport(agent_node, tenant_a, mariadb_server, django_capture_on_commit_callbacks):  # noqa: F811
    """The same operations over the agent's signed HTTP; the admin password travels only in the call."""
    node, _agent = agent_node
    Node.all_tenants.filter(pk=node.pk).update(roles=["db"])
    flow = Flow(django_capture_on_commit_callbacks, tenant_a)
    server = flow.register(mariadb_server, node_name=node.hostname)
    database = flow.create("database", server, "viaagent")
    user = flow.create("user", server, "viaagent")
    flow.grant(database, user)
    make_table(mariadb_server, user["full_name"], user["password"], database["full_name"])
    flow("delete", reverse("database-detail", kwargs={"pk": database["id"]}), {"confirm": "viaagent"})
    flow("delete", reverse("database-user-detail", kwargs={"pk": user["id"]}))
    assert database["full_name"] not in mariadb_server.databases()
    assert user["full_name"] not in mariadb_server.users()


@pytest.mark.django_db
@pytest.mark.usefixtures("no_dispatch")
def test_operators_register_a_server_in_the_admin(client, tenant_a):
    from django.contrib.auth import get_user_model

    from tests.conftest import PASSWORD, admin_login
    from tests.console.test_admin import form_data

    console = admin_login(client, get_user_model().objects.create_superuser("op@mpanel.test", PASSWORD))
    secret = "Admin-Secret-99"
    add = reverse("admin:databases_databaseserver_add")
    assert console.get(add).status_code == 200
    data = {"tenant": str(tenant_a.tenant.pk), "node": str(db_node(tenant_a).pk), "engine": "mariadb",
            "host": "db.example", "port": "3306", "admin_user": "root"}  # fmt: skip
    refused = console.post(add, data)  # no password: the form says so
    assert refused.status_code == 200 and "admin_password" in refused.context["adminform"].form.errors
    response = console.post(add, {**data, "admin_password": secret})
    assert response.status_code == 302, response.context["adminform"].form.errors
    server = DatabaseServer.all_tenants.get(host="db.example")
    assert crypto.decrypt(server.admin_password_encrypted) == secret
    assert Job.all_tenants.filter(type="database.server.check", object_id=str(server.pk)).exists()

    change = reverse("admin:databases_databaseserver_change", args=[server.pk])
    page = console.get(change)
    assert secret not in page.content.decode() and server.admin_password_encrypted not in page.content.decode()
    edited = console.post(change, {**form_data(page), "port": "3307"})  # the password field left empty
    assert edited.status_code == 302
    server.refresh_from_db()
    assert server.port == 3307 and crypto.decrypt(server.admin_password_encrypted) == secret
    audited = json.dumps(list(AuditEvent.objects.filter(object_id=str(server.pk)).values("changes")), default=str)
    assert "3307" in audited and secret not in audited and "admin_password_encrypted" not in audited


def test_a_mariadb_grant_covers_its_own_database_only(mariadb_server):  # noqa: F811
    """``_`` is a wildcard in a MariaDB grant's database name: the node escapes it, so a grant on
    ``tq_a_b`` does not open ``tqxaxb`` (node side called directly, as the local driver does)."""
    from agent import databases as node_side
    from apps.databases.passwords import mysql_native

    db = mariadb_server
    server = {"engine": "mariadb", "host": db.host, "port": db.port, "admin_user": db.admin_user,
              "admin_password": db.admin_password}  # fmt: skip
    for name in ("tq_a_b", "tqxaxb"):
        node_side.call("db_database_ensure", {"server": server, "name": name})
    node_side.call("db_user_ensure", {"server": server, "name": "tq_user", "verifier": mysql_native("pw-tq-123")})
    node_side.call("db_grant", {"server": server, "database": "tq_a_b", "user": "tq_user"})
    node_side.call("db_grant", {"server": server, "database": "tq_a_b", "user": "tq_user"})  # converges
    try:
        assert not refused(db, "tq_user", "pw-tq-123", "tq_a_b")
        assert refused(db, "tq_user", "pw-tq-123", "tqxaxb")
    finally:
        node_side.call("db_user_drop", {"server": server, "name": "tq_user", "databases": []})
        for name in ("tq_a_b", "tqxaxb"):
            node_side.call("db_database_drop", {"server": server, "name": name, "users": []})
    assert not {"tq_a_b", "tqxaxb"} & db.databases()
