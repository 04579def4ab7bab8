"""Real database servers for the hosting databases tests, started once per session on free
loopback ports with their own data folders, and stopped by PID:

- MariaDB (Debian's mariadb-server): ``mariadb-install-db`` then ``mariadbd --no-defaults`` with
  real grant tables (never ``--skip-grant-tables``); the panel's admin is a user made for it.
- PostgreSQL: a throwaway cluster (not the suite's own server, which trusts every login) whose
  TCP logins need a SCRAM password, so a wrong password is refused for real.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymysql
import pytest

from tests.dns_support import free_port

ADMIN_USER = "mpanel_admin"


@dataclass
class DbServer:
    engine: str
    port: int
    admin_user: str
    admin_password: str
    data: Path
    host: str = "127.0.0.1"

    def connect(self, user: str, password: str, database: str | None = None):
        """A session as ``user`` (raises the driver's error when refused)."""
        if self.engine == "postgresql":
            return psycopg.connect(host=self.host, port=self.port, user=user, password=password,
                                   dbname=database or "postgres", autocommit=True, connect_timeout=5)  # fmt: skip
        return pymysql.connect(host=self.host, port=self.port, user=user, password=password, database=database,
                               autocommit=True, connect_timeout=5)  # fmt: skip

    def admin(self, database: str | None = None):
        return self.connect(self.admin_user, self.admin_password, database)

    def query(self, sql: str, params=()) -> list[tuple]:
        conn = self.admin()
        try:
            if self.engine == "postgresql":
                return conn.execute(sql, params).fetchall()
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def databases(self) -> set[str]:
        if self.engine == "postgresql":
            return {r[0] for r in self.query("SELECT datname FROM pg_database")}
        return {r[0] for r in self.query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")}

    def users(self) -> set[str]:
        if self.engine == "postgresql":
            return {r[0] for r in self.query("SELECT rolname FROM pg_roles")}
        return {r[0] for r in self.query("SELECT User FROM mysql.user")}

    def errors(self) -> tuple[type[Exception], ...]:
        return (psycopg.Error,) if self.engine == "postgresql" else (pymysql.MySQLError,)


def _wait(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            check()
            return
        except Exception as exc:
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up: {last}")


def _folder(prefix: str) -> Path:
    # The daemons run as their own users: the folder must be theirs to enter (mkdtemp is 0700).
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def mariadb_server():
    if shutil.which("mariadbd") is None and not Path("/usr/sbin/mariadbd").exists():
        pytest.fail("mariadb-server is needed: run the tests with `make test` (it installs it)")
    root = _folder("mpanel-mariadb-")
    data, sock, port = root / "data", root / "mysqld.sock", free_port()
    data.mkdir()
    shutil.chown(data, "mysql", "mysql")
    shutil.chown(root, "mysql", "mysql")
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=mysql",
                    "--auth-root-authentication-method=socket", "--skip-test-db"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    proc = subprocess.Popen(
        [mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--pid-file={root / 'mariadbd.pid'}", f"--log-error={root / 'error.log'}",
         "--user=mysql", "--skip-log-bin", "--innodb-buffer-pool-size=32M", "--skip-name-resolve",
         "--innodb-flush-log-at-trx-commit=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    password = secrets.token_urlsafe(18)

    def root_socket():
        # root logs in through the socket as the unix user root (unix_socket plugin): no password.
        pymysql.connect(unix_socket=str(sock), user="root", autocommit=True).close()

    try:
        _wait(root_socket, "MariaDB")
        conn = pymysql.connect(unix_socket=str(sock), user="root", autocommit=True)
        with conn.cursor() as cur:
            cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", [ADMIN_USER, password])
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO `{ADMIN_USER}`@'127.0.0.1' WITH GRANT OPTION")
        conn.close()
        yield DbServer("mariadb", port, ADMIN_USER, password, data)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not found:
        pytest.fail("postgresql is needed: run the tests with `make test` (it installs it)")
    return Path(found[-1])


@contextlib.contextmanager
def postgres_cluster(listen_addresses: str = "127.0.0.1"):
    """A throwaway PostgreSQL cluster listening on ``listen_addresses`` (its own folder and port),
    stopped and removed on exit."""
    pg_bin = _pg_bin()
    root = _folder("mpanel-pgnode-")
    data, port, password = root / "data", free_port(), secrets.token_urlsafe(18)
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    shutil.chown(root, "postgres", "postgres")
    shutil.chown(pwfile, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, str(pg_bin / "initdb"), "-D", str(data), "-U", ADMIN_USER, f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    pwfile.unlink()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"port = {port}\nlisten_addresses = '{listen_addresses}'\nunix_socket_directories = '{root}'\n"
                   "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 50\n"
                   "password_encryption = 'scram-sha-256'\n")  # fmt: skip
    subprocess.run([*as_postgres, str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
                    "start"], check=True, capture_output=True, timeout=120)  # fmt: skip
    server = DbServer("postgresql", port, ADMIN_USER, password, data)
    try:
        _wait(lambda: server.admin().close(), "PostgreSQL")
        yield server
    finally:
        pid_file = data / "postmaster.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
            deadline = time.monotonic() + 30
            while pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    with postgres_cluster("127.0.0.1") as server:
        yield server
