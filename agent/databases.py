"""Node side of hosting databases: PostgreSQL (psycopg) and MariaDB (PyMySQL).

The panel sends, with each operation, the database server to act on (``engine``, ``host``,
``port``, ``admin_user``, ``admin_password``) and names it validated itself; they are checked
again here (the agent trusts no one's input) and always quoted: ``psycopg.sql.Identifier`` for
PostgreSQL, backtick quoting for MariaDB, values as parameters or driver-escaped literals.

Passwords never reach this code in clear: a user's password arrives as the verifier the server
itself stores (PostgreSQL ``SCRAM-SHA-256$…``, MariaDB ``*<hex>`` of ``mysql_native_password``),
computed by the panel. Every operation converges (create if absent, drop if present), so a job
can run it again. Error messages carry the server's words, never the admin password.

The drivers are imported lazily: a node that serves no databases needs neither.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import AgentError
from .registry import OPERATIONS, Node

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PG_VERIFIER_RE = re.compile(r"^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")
MARIADB_VERIFIER_RE = re.compile(r"^\*[0-9A-F]{40}$")
ENGINES = ("postgresql", "mariadb")
CONNECT_TIMEOUT = 10
# MariaDB errors that mean "nothing to revoke": no such grant (1141), none on that table (1147).
MARIADB_NO_GRANT = {1141, 1147}


def _name(value, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise AgentError(f"bad {what} name {value!r}", permanent=True)
    return value


def _server(args: dict) -> dict:
    server = args.get("server")
    if not isinstance(server, dict) or server.get("engine") not in ENGINES:
        raise AgentError("a database server (engine postgresql or mariadb) is required", permanent=True)
    try:
        port = int(server.get("port"))
    except (TypeError, ValueError) as exc:
        raise AgentError("the database server's port must be a number", permanent=True) from exc
    host, user, password = server.get("host"), server.get("admin_user"), server.get("admin_password")
    if not all(isinstance(v, str) and v for v in (host, user)) or not isinstance(password, str):
        raise AgentError("the database server needs host, admin_user and admin_password", permanent=True)
    return {"engine": server["engine"], "host": host, "port": port, "user": user, "password": password}


# --- PostgreSQL ------------------------------------------------------------------------------------


class Postgres:
    def __init__(self, server: dict):
        self.server = server

    @contextmanager
    def connect(self, dbname: str = "postgres") -> Iterator:
        import psycopg

        s = self.server
        try:
            conn = psycopg.connect(host=s["host"], port=s["port"], user=s["user"], password=s["password"],
                                   dbname=dbname, autocommit=True, connect_timeout=CONNECT_TIMEOUT)  # fmt: skip
        except psycopg.Error as exc:
            raise AgentError(f"postgresql: cannot connect to {s['host']}:{s['port']} as {s['user']}: {exc}") from exc
        try:
            yield conn
        except psycopg.Error as exc:
            raise AgentError(f"postgresql: {exc}") from exc
        finally:
            conn.close()

    def check(self) -> dict:
        with self.connect() as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        return {"engine": "postgresql", "version": str(version)}

    def security(self) -> dict:
        """Where the server listens and whether it offers TLS (Guardian's exposure check)."""
        with self.connect() as conn:
            listen = str(conn.execute("SHOW listen_addresses").fetchone()[0])
            ssl = str(conn.execute("SHOW ssl").fetchone()[0])
        return {
            "engine": "postgresql",
            "listen": [a.strip() for a in listen.split(",") if a.strip()],
            "ssl": ssl == "on",
        }

    def _exists(self, conn, catalog: str, name: str) -> bool:
        query = {
            "database": "SELECT 1 FROM pg_database WHERE datname = %s",
            "role": "SELECT 1 FROM pg_roles WHERE rolname = %s",
        }
        return conn.execute(query[catalog], [name]).fetchone() is not None

    def database_ensure(self, name: str) -> dict:
        from psycopg import errors, sql

        with self.connect() as conn:
            created = False
            if not self._exists(conn, "database", name):
                try:
                    # template0: a copy of template1 fails while anyone is connected to it.
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name))
                    )
                    created = True
                except errors.DuplicateDatabase:
                    pass  # a concurrent run made it: converge
            # PUBLIC may CONNECT and make TEMP tables by default: only granted users may.
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
            size = conn.execute("SELECT pg_database_size(%s)", [name]).fetchone()[0]
        return {"created": created, "size_bytes": int(size)}

    def database_drop(self, name: str, users: list[str]) -> dict:
        from psycopg import sql

        with self.connect() as conn:
            existed = self._exists(conn, "database", name)
            # FORCE ends the sessions still connected to it (PostgreSQL 13+).
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        return {"dropped": existed}

    def user_ensure(self, name: str, verifier: str) -> dict:
        from psycopg import errors, sql

        if not PG_VERIFIER_RE.match(verifier or ""):
            raise AgentError("bad password verifier for postgresql", permanent=True)
        with self.connect() as conn:
            row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [name]).fetchone()
            if row is not None and row[0]:
                raise AgentError(f"role {name!r} is a superuser here: refusing to manage it", permanent=True)
            created = False
            if row is None:
                try:
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                        sql.Identifier(name), sql.Literal(verifier)))  # fmt: skip
                    created = True
                except errors.DuplicateObject:
                    pass
            if not created:
                conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(name),
                                                                                   sql.Literal(verifier)))  # fmt: skip
        return {"created": created}

    def user_drop(self, name: str, databases: list[str]) -> dict:
        from psycopg import sql

        role = sql.Identifier(name)
        with self.connect() as conn:
            row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [name]).fetchone()
            if row is None:
                return {"dropped": False}
            if row[0]:
                raise AgentError(f"role {name!r} is a superuser here: refusing to manage it", permanent=True)
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
            present = [d for d in databases if self._exists(conn, "database", d)]
        # A role that owns objects cannot be dropped: its tables go to the admin (data is kept),
        # and its remaining privileges are revoked, in each database it was granted.
        for database in present:
            with self.connect(database) as conn:
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(role))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))
        return {"dropped": True}

    def grant(self, database: str, user: str) -> dict:
        from psycopg import sql

        db, role = sql.Identifier(database), sql.Identifier(user)
        with self.connect() as conn:
            self._require(conn, database, user)
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {} TO {}").format(db, role))
        with self.connect(database) as conn:
            conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(role))
            conn.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(role))
            conn.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}").format(role))
        return {"granted": True}

    def revoke(self, database: str, user: str) -> dict:
        from psycopg import sql

        db, role = sql.Identifier(database), sql.Identifier(user)
        with self.connect() as conn:
            if not (self._exists(conn, "database", database) and self._exists(conn, "role", user)):
                return {"revoked": False}
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, role))
            # CONNECT is checked only when a session starts: end the ones already in.
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND datname = %s",
                         [user, database])  # fmt: skip
        with self.connect(database) as conn:
            conn.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(role))
            conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(role))
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(role))
        return {"revoked": True}

    def _require(self, conn, database: str, user: str) -> None:
        if not self._exists(conn, "database", database):
            raise AgentError(f"database {database!r} does not exist (yet)")
        if not self._exists(conn, "role", user):
            raise AgentError(f"role {user!r} does not exist (yet)")

    def sizes(self, names: list[str]) -> dict:
        with self.connect() as conn:
            rows = conn.execute("SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname = ANY(%s)",
                                [names]).fetchall()  # fmt: skip
        return {str(name): int(size) for name, size in rows}


# --- MariaDB ---------------------------------------------------------------------------------------


def _bq(name: str) -> str:
    """A backtick-quoted identifier (names are validated too; a backtick is doubled)."""
    return "`" + name.replace("`", "``") + "`"


def _grant_db(name: str) -> str:
    """The database part of GRANT/REVOKE: ``_`` and ``%`` are wildcards there, so they are escaped,
    or a grant on ``t1_a_b`` would also match a database ``t1xaxb``."""
    return _bq(name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%"))


class MariaDB:
    host = "%"  # the account's host part: users may connect from anywhere the server listens

    def __init__(self, server: dict):
        self.server = server

    @contextmanager
    def connect(self) -> Iterator:
        import pymysql

        s = self.server
        try:
            conn = pymysql.connect(host=s["host"], port=s["port"], user=s["user"], password=s["password"],
                                   autocommit=True, connect_timeout=CONNECT_TIMEOUT, charset="utf8mb4")  # fmt: skip
        except pymysql.MySQLError as exc:
            raise AgentError(f"mariadb: cannot connect to {s['host']}:{s['port']} as {s['user']}: {exc}") from exc
        try:
            with conn.cursor() as cursor:
                yield cursor
        except pymysql.MySQLError as exc:
            raise AgentError(f"mariadb: {exc}") from exc
        finally:
            conn.close()

    def check(self) -> dict:
        with self.connect() as cur:
            cur.execute("SELECT VERSION()")
            return {"engine": "mariadb", "version": str(cur.fetchone()[0])}

    def security(self) -> dict:
        with self.connect() as cur:
            cur.execute("SELECT @@bind_address, @@have_ssl, @@skip_networking")
            bind, have_ssl, skip_networking = cur.fetchone()
        # An empty bind_address (the compiled default) means every interface.
        listen = [a.strip() for a in str(bind or "*").split(",") if a.strip()] or ["*"]
        return {"engine": "mariadb", "listen": [] if int(skip_networking or 0) else listen, "ssl": have_ssl == "YES"}

    @staticmethod
    def _db_exists(cur, name: str) -> bool:
        cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", [name])
        return cur.fetchone() is not None

    def _user_exists(self, cur, name: str) -> bool:
        cur.execute("SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s", [name, self.host])
        return cur.fetchone() is not None

    def _kill_sessions(self, cur, user: str, database: str | None = None) -> None:
        import pymysql

        query = "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s"
        params = [user]
        if database is not None:
            query += " AND DB = %s"
            params.append(database)
        cur.execute(query, params)
        for (pid,) in cur.fetchall():
            with contextlib.suppress(pymysql.MySQLError):  # it ended on its own meanwhile
                cur.execute("KILL CONNECTION %s", [int(pid)])

    def database_ensure(self, name: str) -> dict:
        with self.connect() as cur:
            created = not self._db_exists(cur, name)
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {_bq(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            size = self._sizes(cur, [name]).get(name, 0)
        return {"created": created, "size_bytes": size}

    def database_drop(self, name: str, users: list[str]) -> dict:
        with self.connect() as cur:
            # DROP DATABASE keeps database-level grants: revoke them, or they would apply to a
            # database made later under the same name.
            for user in users:
                self._revoke(cur, name, user)
            existed = self._db_exists(cur, name)
            cur.execute(f"DROP DATABASE IF EXISTS {_bq(name)}")
        return {"dropped": existed}

    def user_ensure(self, name: str, verifier: str) -> dict:
        if not MARIADB_VERIFIER_RE.match(verifier or ""):
            raise AgentError("bad password verifier for mariadb", permanent=True)
        with self.connect() as cur:
            created = not self._user_exists(cur, name)
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY PASSWORD %s", [name, self.host, verifier])
            cur.execute("ALTER USER %s@%s IDENTIFIED BY PASSWORD %s", [name, self.host, verifier])
        return {"created": created}

    def user_drop(self, name: str, databases: list[str]) -> dict:
        with self.connect() as cur:
            existed = self._user_exists(cur, name)
            cur.execute("DROP USER IF EXISTS %s@%s", [name, self.host])
            self._kill_sessions(cur, name)
        return {"dropped": existed}

    def grant(self, database: str, user: str) -> dict:
        with self.connect() as cur:
            if not self._db_exists(cur, database):
                raise AgentError(f"database {database!r} does not exist (yet)")
            if not self._user_exists(cur, user):
                raise AgentError(f"user {user!r} does not exist (yet)")
            cur.execute(f"GRANT ALL PRIVILEGES ON {_grant_db(database)}.* TO %s@%s", [user, self.host])
        return {"granted": True}

    def _revoke(self, cur, database: str, user: str) -> bool:
        import pymysql

        if not self._user_exists(cur, user):
            return False
        try:
            cur.execute(f"REVOKE ALL PRIVILEGES ON {_grant_db(database)}.* FROM %s@%s", [user, self.host])
        except pymysql.MySQLError as exc:
            if exc.args and exc.args[0] in MARIADB_NO_GRANT:
                return False
            raise
        self._kill_sessions(cur, user, database)
        return True

    def revoke(self, database: str, user: str) -> dict:
        with self.connect() as cur:
            return {"revoked": self._revoke(cur, database, user)}

    @staticmethod
    def _sizes(cur, names: list[str]) -> dict:
        if not names:
            return {}
        marks = ", ".join(["%s"] * len(names))
        cur.execute(f"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({marks})", names)  # noqa: S608
        out = {str(row[0]): 0 for row in cur.fetchall()}
        cur.execute(
            "SELECT TABLE_SCHEMA, COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES"  # noqa: S608
            f" WHERE TABLE_SCHEMA IN ({marks}) GROUP BY TABLE_SCHEMA",
            names,
        )
        for schema, size in cur.fetchall():
            out[str(schema)] = int(size)
        return out

    def sizes(self, names: list[str]) -> dict:
        with self.connect() as cur:
            return self._sizes(cur, names)


def _engine(server: dict) -> Postgres | MariaDB:
    return Postgres(server) if server["engine"] == "postgresql" else MariaDB(server)


# --- the database operations (agent.dispatch calls them by name) ----------------------------------
# The node itself plays no part: each operation names its database server (``args["server"]``),
# checked before anything else.


@OPERATIONS.register("db_check")
def db_check(node: Node | None, args: dict) -> dict:
    return _engine(_server(args)).check()


@OPERATIONS.register("db_security")
def db_security(node: Node | None, args: dict) -> dict:
    """Read-only: listen addresses and TLS, for Guardian."""
    return _engine(_server(args)).security()


@OPERATIONS.register("db_sizes")
def db_sizes(node: Node | None, args: dict) -> dict:
    engine = _engine(_server(args))
    names = args.get("names") or []
    if not isinstance(names, list):
        raise AgentError("names must be a list", permanent=True)
    return engine.sizes([_name(n, "database") for n in names])


@OPERATIONS.register("db_database_ensure")
def db_database_ensure(node: Node | None, args: dict) -> dict:
    engine = _engine(_server(args))
    return engine.database_ensure(_name(args.get("name"), "database"))


@OPERATIONS.register("db_database_drop")
def db_database_drop(node: Node | None, args: dict) -> dict:
    engine = _engine(_server(args))
    users = [_name(u, "user") for u in args.get("users") or []]
    return engine.database_drop(_name(args.get("name"), "database"), users)


@OPERATIONS.register("db_user_ensure")
def db_user_ensure(node: Node | None, args: dict) -> dict:
    engine = _engine(_server(args))
    verifier = args.get("verifier")
    if not isinstance(verifier, str):
        raise AgentError("a password verifier is required", permanent=True)
    return engine.user_ensure(_name(args.get("name"), "user"), verifier)


@OPERATIONS.register("db_user_drop")
def db_user_drop(node: Node | None, args: dict) -> dict:
    engine = _engine(_server(args))
    databases = [_name(d, "database") for d in args.get("databases") or []]
    return engine.user_drop(_name(args.get("name"), "user"), databases)


@OPERATIONS.register("db_grant")
def db_grant(node: Node | None, args: dict) -> dict:
    engine = _engine(_server(args))
    return engine.grant(_name(args.get("database"), "database"), _name(args.get("user"), "user"))


@OPERATIONS.register("db_revoke")
def db_revoke(node: Node | None, args: dict) -> dict:
    engine = _engine(_server(args))
    return engine.revoke(_name(args.get("database"), "database"), _name(args.get("user"), "user"))


def call(op: str, args: dict) -> dict:
    """One database operation without a node (none is needed): the tests' way in."""
    operation = OPERATIONS.get(op)
    if operation is None or operation.__module__ != __name__:
        raise AgentError(f"unknown operation {op!r}", permanent=True)
    return operation(None, args)
