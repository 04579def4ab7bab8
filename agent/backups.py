"""Backups on restic, node side (docs/modules/backups.md).

The node runs Debian's ``restic``; this module never reads or writes restic's format itself.
Layout under ``<node root>/backups``:
    repos/<repository id>/   a local restic repository (the ``local`` backend of a ``backup`` node)
    cache/                   restic's cache
    stage/<uuid>/            a restore being staged, swapped in when complete
    scratch/<uuid>/          a restore drill's scratch copy, removed when compared

Secrets: the repository password arrives with each call (the panel decrypts it for that call) and
reaches restic only through its environment (``RESTIC_PASSWORD``), never its command line; database
admin passwords reach ``pg_dump``/``mariadb-dump`` the same way (``PGPASSWORD``, ``MYSQL_PWD``).
Error messages carry restic's words, never a password.

Each snapshot is made with ``--host res-<kind>-<resource id>`` (restic's grouping key for
``forget``) and tags ``mpanel``, ``reason-<reason>`` and, for an account backup, ``set-<set id>``. Sources:
- ``files``: a website's tree (``restic backup .`` from inside it, owners and modes kept);
- ``maildir``: a mailbox's Maildir (``<mail home>/<domain>/<local part>``), the same way;
- ``pod``: a pod's rootfs, the container paused for the copy and resumed after (``pod_pause``);
- ``postgresql`` / ``mariadb``: ``pg_dump -Fc`` / ``mariadb-dump --single-transaction`` piped into
  ``restic backup --stdin`` (no dump file on disk); a dump that fails forgets the snapshot it fed;
- ``zone``: the zone's master file, given by the panel, through stdin.

Every run first clears stale locks (``restic unlock`` removes only locks whose process is gone or
that are too old; a live job's lock is kept), so a job killed mid-run leaves a repository the next
run uses. A run that dies before restic writes its snapshot leaves no snapshot: restic writes the
snapshot object last.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from . import rootfs
from .errors import AgentError
from .registry import OPERATIONS, Node
from .validate import Invalid
from .validate import mail as validate_mail

RESTIC = os.environ.get("MPANEL_RESTIC", "restic")
REPO_ID_RE = re.compile(r"^r[0-9a-f]{32}$")
RESOURCE_RE = re.compile(r"^[a-z]{2,12}-[0-9a-f]{32}$")
SNAPSHOT_RE = re.compile(r"^[0-9a-f]{8,64}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SITE_RE = re.compile(r"^w[0-9a-f]{32}$")
POD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
REASONS = ("manual", "scheduled", "pre-restore", "final", "drill")
STDIN_NAMES = {"postgresql": "database.pgdump", "mariadb": "database.sql", "zone": "zone.db"}
TIMEOUT = 6 * 3600
BACKENDS = ("local", "sftp", "s3")
SSH_ALIAS = "mpanel-backup-repository"  # the known_hosts name of the one host key the server must show
HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|[0-9a-fA-F:.]{2,45})$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
REMOTE_PATH_RE = re.compile(r"^/?[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
HOST_KEY_RE = re.compile(r"^(?:ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa) [A-Za-z0-9+/=]+$")
ENDPOINT_RE = re.compile(r"^https?://(?:[A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_READ = 8 * 1024 * 1024


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise AgentError(message, permanent=True)


def _base(node: Node) -> Path:
    return Path(node.root) / "backups"


def mail_home(node: Node) -> Path:
    """Where the node's Maildirs are (``<domain>/<local part>``, what Postfix's virtual mailbox map
    names and Dovecot's ``mail_location`` reads): ``MPANEL_MAIL_HOME``, else ``<root>/mail/vmail``."""
    configured = os.environ.get("MPANEL_MAIL_HOME")
    return Path(configured) if configured else Path(node.root) / "mail" / "vmail"


# --- the repository ---------------------------------------------------------------------------------


class Repo:
    """One restic repository as the panel describes it: ``{"id", "backend", "password", …}``.

    ``local``: ``<root>/backups/repos/<id>`` on this node. ``sftp``: ``<path>/<id>`` on an SSH server
    (``host``, ``port``, ``user``, ``host_key`` checked strictly, ``key`` the private key), reached by
    restic's ``sftp:`` backend through ``ssh``; the key is written 0600 into a folder of its own for
    the time of this call only (removed when the call ends). ``s3``: ``<endpoint>/<bucket>/<id>``
    (``region``, ``access_key_id``, ``secret_key``), the keys in restic's environment only."""

    def __init__(self, node: Node, spec: object):
        _check(isinstance(spec, dict), "a repository is required")
        repo_id, backend, password = spec.get("id"), spec.get("backend", "local"), spec.get("password")
        _check(isinstance(repo_id, str) and bool(REPO_ID_RE.match(repo_id)), "bad repository id")
        _check(backend in BACKENDS, f"backend {backend!r} is not supported on this node")
        _check(isinstance(password, str) and len(password) >= 16, "the repository password is missing")
        self.node = node
        self.base = _base(node)
        self.backend = backend
        self.id = repo_id
        self.path = self.base / "repos" / repo_id
        self._password = password
        self._options: list[str] = []
        self._extra_env: dict[str, str] = {}
        self._ssh: dict | None = None
        if backend == "sftp":
            self.location = self._sftp(spec)
        elif backend == "s3":
            self.location = self._s3(spec)
        else:
            self.location = str(self.path)

    def _sftp(self, spec: dict) -> str:
        host, port, user, path = spec.get("host"), spec.get("port"), spec.get("user"), spec.get("path")
        host_key, key = spec.get("host_key"), spec.get("key")
        _check(isinstance(host, str) and bool(HOST_RE.match(host)), "bad SFTP host")
        _check(isinstance(port, int) and 0 < port < 65536, "bad SFTP port")
        _check(isinstance(user, str) and bool(USER_RE.match(user)), "bad SFTP user")
        _check(isinstance(path, str) and bool(REMOTE_PATH_RE.match(path)) and ".." not in path.split("/"),
               "bad SFTP path")  # fmt: skip
        _check(isinstance(host_key, str) and bool(HOST_KEY_RE.match(host_key)), "the server's host key is missing")
        _check(isinstance(key, str) and "PRIVATE KEY" in key, "the SSH key is missing")
        self._ssh = {"host": host, "port": port, "user": user, "host_key": host_key, "key": key}
        shown = f"[{host}]" if ":" in host else host
        return f"sftp://{user}@{shown}:{port}/{path}/{self.id}"

    def _transport(self) -> tuple[list[str], Callable[[], None]]:
        """restic's options for one process, and what removes their files when it ends. For SFTP: the
        private key (0600) and the one host key the server must show, in a folder of their own, for
        the time of that one restic process only."""
        if self._ssh is None:
            return list(self._options), lambda: None
        keys = self.base / "keys"
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        _sweep_keys(keys)
        folder = Path(tempfile.mkdtemp(dir=keys, prefix="k"))
        try:
            identity, known = folder / "id", folder / "known_hosts"
            fd = os.open(identity, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                key = self._ssh["key"]
                fh.write(key if key.endswith("\n") else key + "\n")
            known.write_text(f"{SSH_ALIAS} {self._ssh['host_key']}\n")
            ssh = shutil.which("ssh") or "ssh"
            command = [ssh, "-F", "/dev/null", "-p", str(self._ssh["port"]), "-i", str(identity),
                       "-l", self._ssh["user"], "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                       "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
                       "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"HostKeyAlias={SSH_ALIAS}",
                       "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=30", self._ssh["host"],
                       "-s", "sftp"]  # fmt: skip
            # restic splits sftp.command on spaces: no part of it may hold one (the node root included).
            _check(not any(" " in part or '"' in part for part in command), "a path of the SSH command holds a space")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return [*self._options, "-o", "sftp.command=" + " ".join(command)], lambda: shutil.rmtree(folder, True)

    def _s3(self, spec: dict) -> str:
        endpoint, bucket, region = spec.get("endpoint"), spec.get("bucket"), spec.get("region") or "us-east-1"
        access, secret = spec.get("access_key_id"), spec.get("secret_key")
        _check(isinstance(endpoint, str) and bool(ENDPOINT_RE.match(endpoint)), "bad S3 endpoint")
        _check(isinstance(bucket, str) and bool(BUCKET_RE.match(bucket)), "bad S3 bucket")
        _check(isinstance(region, str) and bool(REGION_RE.match(region)), "bad S3 region")
        _check(isinstance(access, str) and bool(access) and isinstance(secret, str) and bool(secret),
               "the S3 keys are missing")  # fmt: skip
        self._options = ["-o", f"s3.region={region}", "-o", "s3.bucket-lookup=path"]
        # The keys reach restic through its environment only, never its command line.
        self._extra_env = {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": region}
        return f"s3:{endpoint}/{bucket}/{self.id}"

    @property
    def remote(self) -> bool:
        return self.backend != "local"

    def env(self, **extra: str) -> dict:
        cache = self.base / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.base),
            "RESTIC_REPOSITORY": self.location,
            "RESTIC_PASSWORD": self._password,  # the environment, never the command line
            "RESTIC_CACHE_DIR": str(cache),
            **self._extra_env,
            **extra,
        }

    def run(self, *args: str, input: bytes | None = None, check: bool = True, cwd: str | Path | None = None,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess:  # fmt: skip
        options, done = self._transport()
        try:
            result = subprocess.run([RESTIC, *options, *args], input=input, capture_output=True, env=self.env(),
                                    cwd=cwd, timeout=timeout)  # fmt: skip
        except FileNotFoundError as exc:
            raise AgentError("restic is not installed on this node", permanent=True) from exc
        finally:
            done()
        if check and result.returncode != 0:
            raise AgentError(f"restic {args[0]}: {explain(result.stderr) if self.remote else _tail(result.stderr)}")
        return result

    def popen(self, *args: str, stdin=None, stdout=None, cwd=None) -> subprocess.Popen:
        options, done = self._transport()
        try:
            proc = subprocess.Popen([RESTIC, *options, *args], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                    env=self.env(), cwd=cwd)  # fmt: skip
        except FileNotFoundError as exc:
            done()
            raise AgentError("restic is not installed on this node", permanent=True) from exc
        if self._ssh is not None:  # the key goes when this restic process ends
            threading.Thread(target=lambda: (proc.wait(), done()), daemon=True).start()
        return proc

    def exists(self) -> bool:
        if not self.remote:
            return (self.path / "config").exists()
        result = self.run("cat", "config", check=False, timeout=120)
        if result.returncode == 0:
            return True
        if _missing_repository(result.stderr):
            return False
        raise AgentError(f"restic cat config: {explain(result.stderr)}")

    def init(self) -> bool:
        if self.exists():
            return False
        if not self.remote:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        result = self.run("init", check=False)
        if result.returncode != 0:
            raise AgentError(f"restic init: {explain(result.stderr)}")
        return True

    def unlock(self) -> None:
        """Remove stale locks only (a killed job's): a lock of a live process is kept."""
        if self.exists():
            self.run("unlock", check=False)

    def snapshot(self, snapshot_id: str) -> dict:
        found = json.loads(self.run("snapshots", "--json", snapshot_id).stdout or b"[]")
        _check(bool(found), f"no snapshot {snapshot_id}")
        return found[0]

    def snapshots(self, host: str | None = None) -> list[dict]:
        args = ["snapshots", "--json"] + (["--host", host] if host else [])
        return json.loads(self.run(*args).stdout or b"[]")


def _sweep_keys(keys: Path) -> None:
    """Key folders a killed call left behind (older than any call may last) are removed."""
    limit = time.time() - TIMEOUT - 600
    for folder in keys.iterdir():
        with contextlib.suppress(OSError):
            if folder.stat().st_mtime < limit:
                shutil.rmtree(folder, ignore_errors=True)


def _missing_repository(stderr: bytes) -> bool:
    """The storage answered, and there is no repository there (yet): not a connection problem. restic
    asks "Is there a repository at the following location?" after any failure to open, so the
    connection's own failures are ruled out first."""
    text = stderr.decode("utf-8", "replace").lower()
    if any(needle in text for needle, _meaning in EXPLAINED[:-2]):
        return False
    return ("is there a repository at the following location" in text or "does not exist" in text
            or "no such file" in text or "nosuchkey" in text)  # fmt: skip


# restic's and ssh's words for the usual setup mistakes, and what the person should look at.
EXPLAINED = (
    ("host key verification failed", "the SSH server's host key is not the one given: check the host key"),
    ("remote host identification has changed", "the SSH server's host key is not the one given: check the host key"),
    (
        "permission denied (publickey",
        "the SSH server refused the key: put the repository's public key in the user's authorized_keys",
    ),
    ("connection refused", "nothing answers on that host and port"),
    ("no route to host", "the host cannot be reached from this node"),
    ("could not resolve hostname", "the host name does not resolve"),
    ("connection timed out", "the connection timed out"),
    # ssh's own reason does not always reach restic's output before restic gives up (seen under load, for
    # a refused key and for a wrong host key alike), and either is then only this: say what it can be.
    (
        "unable to start the sftp session",
        "the SSH server ended the session before SFTP started: check the host key given, that the "
        "repository's public key is in the user's authorized_keys, and that the server offers SFTP",
    ),
    ("invalidaccesskeyid", "the access key id is not known to the storage"),
    ("signaturedoesnotmatch", "the secret key is wrong"),
    ("access denied", "the storage refused these keys access to the bucket"),
    ("wrong password", "the repository password does not open this repository"),
    (
        "is there a repository at the following location",
        "there is no repository there yet (it is made by the repository's first job)",
    ),
)


def explain(stderr: bytes | str) -> str:
    """restic's own words (ssh's banner lines left out), preceded by what they usually mean."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    kept = "\n".join(line for line in text.splitlines() if not re.match(r"^(subprocess \S+: )?[@\s]*$", line))
    words, lowered = _tail(kept), text.lower()
    for needle, meaning in EXPLAINED:
        if needle in lowered:
            return f"{meaning} ({words})"
    return words


def _tail(stderr: bytes | str, limit: int = 800) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (" | ".join(lines[-4:]) or "failed")[-limit:]


def _summary(stdout: bytes) -> dict:
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict) and data.get("message_type") == "summary":
                return data
    raise AgentError("restic backup gave no summary")


def _ids(args: dict) -> tuple[str, str]:
    resource, reason = args.get("resource"), args.get("reason", "manual")
    _check(isinstance(resource, str) and bool(RESOURCE_RE.match(resource)), "bad resource")
    _check(reason in REASONS, f"bad reason {reason!r}")
    return f"res-{resource}", reason


# --- sources ----------------------------------------------------------------------------------------


def _source(node: Node, args: dict) -> dict:
    source = args.get("source")
    _check(isinstance(source, dict), "a source is required")
    kind = source.get("kind")
    if kind == "files":
        site = source.get("site")
        _check(isinstance(site, str) and bool(SITE_RE.match(site)), "bad site id")
        return {"kind": kind, "path": Path(node.root) / "web" / "www" / site}
    if kind == "maildir":
        try:
            domain = validate_mail.mail_domain(source.get("domain"), field="domain")
            local = validate_mail.local_part(source.get("local"), field="local")
        except Invalid as exc:
            raise AgentError(str(exc), permanent=True) from exc
        return {"kind": kind, "path": mail_home(node) / domain / local}
    if kind == "pod":
        pod = source.get("pod")
        _check(isinstance(pod, str) and bool(POD_RE.match(pod)), "bad pod id")
        try:  # an overlay rootfs unmounted by a node restart is mounted again first: else an empty folder
            path = rootfs.ensure(Path(node.root) / "bundles" / pod, Path(node.root) / "images")
        except OSError as exc:
            raise AgentError(f"the pod's rootfs cannot be mounted: {exc}") from exc
        return {"kind": kind, "pod": pod, "path": path}
    if kind in ("postgresql", "mariadb"):
        server, name = source.get("server"), source.get("name")
        _check(isinstance(server, dict) and server.get("engine") == kind, "a database server is required")
        _check(isinstance(name, str) and bool(NAME_RE.match(name)), "bad database name")
        for key in ("host", "admin_user"):
            _check(isinstance(server.get(key), str) and bool(server[key]), f"the server's {key} is required")
        _check(isinstance(server.get("admin_password"), str), "the server's admin password is required")
        return {"kind": kind, "server": server, "name": name, "port": int(server.get("port") or 0)}
    if kind == "zone":
        text = source.get("text")
        _check(isinstance(text, str) and len(text) < 16 * 1024 * 1024, "the zone's master file is required")
        return {"kind": kind, "text": text}
    raise AgentError(f"unknown source kind {kind!r}", permanent=True)


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    _check(bool(candidates), f"{name} is not installed on this node")
    return candidates[-1]


def _db_env(src: dict) -> dict:
    server = src["server"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if src["kind"] == "postgresql":
        env["PGPASSWORD"] = server["admin_password"]
        env["PGCONNECT_TIMEOUT"] = "10"
    else:
        env["MYSQL_PWD"] = server["admin_password"]
    return env


def _db_target(src: dict, name: str | None = None) -> list[str]:
    s, port = src["server"], str(src["port"])
    if src["kind"] == "postgresql":
        return ["-h", s["host"], "-p", port, "-U", s["admin_user"], "-d", name or src["name"]]
    return ["-h", s["host"], "-P", port, "-u", s["admin_user"], "--protocol=tcp", name or src["name"]]


def _dump_command(src: dict) -> list[str]:
    if src["kind"] == "postgresql":
        return [_pg_bin("pg_dump"), "-Fc", "--no-password", *_db_target(src)]
    binary = shutil.which("mariadb-dump") or shutil.which("mysqldump")
    _check(binary is not None, "mariadb-dump is not installed on this node")
    return [binary, "--single-transaction", "--routines", "--triggers", "--events", "--hex-blob",
            *_db_target(src)]  # fmt: skip


def _load_command(src: dict, name: str) -> list[str]:
    if src["kind"] == "postgresql":
        return [_pg_bin("pg_restore"), "--clean", "--if-exists", "--no-password", "--exit-on-error",
                *_db_target(src, name)]  # fmt: skip
    binary = shutil.which("mariadb") or shutil.which("mysql")
    _check(binary is not None, "the mariadb client is not installed on this node")
    return [binary, *_db_target(src, name)]


@contextlib.contextmanager
def _paused(node: Node, src: dict) -> Iterator[None]:
    """A pod's rootfs is copied frozen (consistent), and thawed whatever happens."""
    if src["kind"] != "pod":
        yield
        return
    pause, resume = OPERATIONS.get("pod_pause"), OPERATIONS.get("pod_resume")
    state = OPERATIONS["pod_state"](node, {"id": src["pod"]}).get("state")
    frozen = state == "running" and pause is not None
    if frozen:
        pause(node, {"id": src["pod"]})
    try:
        yield
    finally:
        if frozen and resume is not None:
            resume(node, {"id": src["pod"]})


def _tree_backup(repo: Repo, src: dict, host: str, tags: list[str]) -> dict:
    path = src["path"]
    _check(path.is_dir(), f"nothing to back up: {path.name} does not exist on this node")
    result = repo.run("backup", "--json", "--quiet", "--host", host, *tags,
                      ".", cwd=path)  # fmt: skip
    return _summary(result.stdout)


def _stdin_backup(repo: Repo, src: dict, host: str, tags: list[str]) -> dict:
    """A dump piped straight into restic: nothing is written on this node's disk."""
    args = ["backup", "--json", "--quiet", "--host", host, *tags,
            "--stdin", "--stdin-filename", STDIN_NAMES[src["kind"]]]  # fmt: skip
    if src["kind"] == "zone":
        return _summary(repo.run(*args, input=src["text"].encode()).stdout)
    try:
        dump = subprocess.Popen(_dump_command(src), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_db_env(src))
    except FileNotFoundError as exc:
        raise AgentError(f"{src['kind']} dump tool missing: {exc}", permanent=True) from exc
    restic = repo.popen(*args, stdin=dump.stdout, stdout=subprocess.PIPE)
    dump.stdout.close()  # restic holds the pipe's read end now
    dump_err: list[bytes] = []
    reader = threading.Thread(target=lambda: dump_err.append(dump.stderr.read()), daemon=True)
    reader.start()
    out, err = restic.communicate(timeout=TIMEOUT)
    dump.wait(timeout=60)
    reader.join(timeout=10)
    summary = _summary(out) if restic.returncode == 0 else None
    if dump.returncode != 0:
        if summary is not None:  # restic stored what the dump gave before it failed: not a backup
            repo.run("forget", summary["snapshot_id"], check=False)
        raise AgentError(f"{src['kind']} dump failed: {_tail(b''.join(dump_err))}")
    if summary is None:
        raise AgentError(f"restic backup: {_tail(err)}")
    return summary


def _counts(src: dict, name: str | None = None) -> dict[str, int]:
    """Rows per table (the drill compares a scratch restore's to the backup's)."""
    name = name or src["name"]
    if src["kind"] == "postgresql":
        query = "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1"
        tables = _psql(src, name, query).split()
        counts = {}
        for table in tables:
            # ``table`` is quoted by PostgreSQL's own format('%I.%I') above.
            counts[table] = int(_psql(src, name, f"SELECT count(*) FROM {table}").strip() or 0)  # noqa: S608
        return counts
    tables = _mariadb_query(src, name, "SHOW TABLES").splitlines()
    counts = {}
    for table in filter(None, tables):
        quoted = "`" + table.replace("`", "``") + "`"  # a quoted identifier: backticks doubled
        counts[table] = int(_mariadb_query(src, name, f"SELECT COUNT(*) FROM {quoted}").strip() or 0)  # noqa: S608
    return counts


def _psql(src: dict, name: str, sql: str) -> str:
    command = [_pg_bin("psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--no-password", *_db_target(src, name),
               "-c", sql]  # fmt: skip
    result = subprocess.run(command, capture_output=True, env=_db_env(src), timeout=600)
    if result.returncode != 0:
        raise AgentError(f"postgresql: {_tail(result.stderr)}")
    return result.stdout.decode()


def _mariadb_query(src: dict, name: str | None, sql: str) -> str:
    binary = shutil.which("mariadb") or shutil.which("mysql")
    _check(binary is not None, "the mariadb client is not installed on this node")
    target = _db_target(src, name or "")
    if not name:
        target = target[:-1]
    result = subprocess.run([binary, "-N", "-B", *target, "-e", sql], capture_output=True, env=_db_env(src),
                            timeout=600)  # fmt: skip
    if result.returncode != 0:
        raise AgentError(f"mariadb: {_tail(result.stderr)}")
    return result.stdout.decode()


# --- operations -------------------------------------------------------------------------------------


@OPERATIONS.register("backup_repo_init")
def repo_init(node: Node, args: dict) -> dict:
    repo = Repo(node, args.get("repository"))
    created = repo.init()
    return {"created": created, **_stats(repo)}


@OPERATIONS.register("backup_repo_delete")
def repo_delete(node: Node, args: dict) -> dict:
    """A local repository's folder goes. An SFTP repository's folder goes when it is on this node (the
    backup node serving it: ``sftp_local`` names the folder there); an S3 repository's objects, or a
    folder on another SSH server, are left for the storage's owner to remove (restic deletes no
    repository): the answer says so."""
    repo = Repo(node, args.get("repository"))
    if repo.backend == "local":
        if repo.path.exists():
            shutil.rmtree(repo.path)
            return {"removed": True}
        return {"removed": False}
    local = args.get("sftp_local")
    if repo.backend == "sftp" and isinstance(local, str) and local.startswith("/"):
        folder = Path(local) / repo.id
        _check(".." not in folder.parts, "bad path")
        if folder.is_dir() and (folder / "config").exists():
            shutil.rmtree(folder)
            return {"removed": True}
    return {"removed": False, "left": repo.location}


def _stats(repo: Repo) -> dict:
    if not repo.exists():
        return {"size_bytes": 0, "raw_bytes": 0, "snapshots": 0}
    raw = json.loads(repo.run("stats", "--json", "--mode", "raw-data").stdout or b"{}")
    if repo.remote:
        # Not on this node's disk: the packs restic stores (deduplicated, compressed, encrypted).
        stored = int(raw.get("total_size") or 0)
    else:
        stored = sum(f.stat().st_size for f in repo.path.rglob("*") if f.is_file())
    return {
        "size_bytes": stored,  # on disk: deduplicated, compressed, encrypted
        "raw_bytes": int(raw.get("total_size") or 0),  # the deduplicated data
        "snapshots": len(repo.snapshots()),
    }


@OPERATIONS.register("backup_repo_test")
def repo_test(node: Node, args: dict) -> dict:
    """Can this node open the repository? ``restic cat config`` (the backend reached, the password
    right); ``ok`` False with what went wrong in plain words, never an exception for a setup mistake."""
    try:
        repo = Repo(node, args.get("repository"))
        result = repo.run("cat", "config", check=False, timeout=120)
    except AgentError as exc:
        return {"ok": False, "output": exc.message}
    except subprocess.TimeoutExpired:
        return {"ok": False, "output": "no answer from the repository within 120 seconds"}
    if result.returncode == 0:
        return {"ok": True, "output": f"restic opened {repo.location}", "exists": True}
    if _missing_repository(result.stderr):  # reached, but nothing there yet
        return {"ok": True, "output": f"{repo.location} answers; the repository is not made there yet (the "
                                      "repository's init job makes it)", "exists": False}  # fmt: skip
    return {"ok": False, "output": explain(result.stderr)}


@OPERATIONS.register("backup_stats")
def stats(node: Node, args: dict) -> dict:
    return _stats(Repo(node, args.get("repository")))


@OPERATIONS.register("backup_run")
def backup_run(node: Node, args: dict) -> dict:
    """One snapshot of one resource: ``{repository, resource, reason, source}``."""
    repo = Repo(node, args.get("repository"))
    host, reason = _ids(args)
    tags = ["--tag", "mpanel", "--tag", f"reason-{reason}"]
    snapshot_set = args.get("set")
    if snapshot_set is not None:  # one run of an account backup: its snapshots are one set
        _check(isinstance(snapshot_set, str) and bool(re.match(r"^[0-9a-f]{32}$", snapshot_set)), "bad set")
        tags += ["--tag", f"set-{snapshot_set}"]
    src = _source(node, args)
    repo.init()
    repo.unlock()
    manifest: dict = {}
    if src["kind"] in ("postgresql", "mariadb"):
        manifest["rows"] = _counts(src)
        summary = _stdin_backup(repo, src, host, tags)
    elif src["kind"] == "zone":
        summary = _stdin_backup(repo, src, host, tags)
    else:
        with _paused(node, src):
            summary = _tree_backup(repo, src, host, tags)
    snap = repo.snapshot(summary["snapshot_id"])
    return {
        "snapshot": snap["id"],
        "short_id": snap.get("short_id", snap["id"][:8]),
        "time": snap["time"],
        "files": int(summary.get("total_files_processed") or 0),
        "size_bytes": int(summary.get("total_bytes_processed") or 0),
        "added_bytes": int(summary.get("data_added") or 0),
        "manifest": manifest,
    }


def _snapshot_arg(args: dict) -> str:
    snap = args.get("snapshot")
    _check(isinstance(snap, str) and bool(SNAPSHOT_RE.match(snap)), "bad snapshot id")
    return snap


def _restore_tree(repo: Repo, snap: str, target: Path, *, verify: bool = False, progress: Path | None = None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    args = ("restore", snap, "--target", str(target), *(["--verify"] if verify else []))
    if progress is None:
        repo.run(*args)
        return
    _restore_watched(repo, snap, target, args, progress)


# --- restore progress -------------------------------------------------------------------------------
# A restore writes its progress to ``progress/<token>.json`` (at most once a second); the panel reads
# it with ``backup_restore_progress`` while its ``backup_restore`` call runs. restic 0.17+ prints
# ``restore --json`` status lines with ``percent_done``: they are used as they are. Older restic
# (Debian 12's 0.14) prints none, so the bytes restored so far are measured in the staging tree and
# set against the snapshot's restore size (``restic stats --mode restore-size``; 0.14 writes each
# file as its blobs arrive, without preallocating, so the bytes on disk grow with the restore).

TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
PROGRESS_EVERY = 1.0  # seconds between two writes of the progress file


def _progress_path(node: Node, token: object) -> Path:
    _check(isinstance(token, str) and bool(TOKEN_RE.match(token)), "bad progress token")
    return _base(node) / "progress" / f"{token}.json"


def _progress_write(path: Path, percent: float, done: int, total: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps({"percent": round(max(0.0, min(percent, 100.0)), 1), "bytes_done": done,
                               "bytes_total": total}))  # fmt: skip
    os.replace(tmp, path)  # a reader sees the old or the new file, never half of one


def _bytes_under(root: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _restore_watched(repo: Repo, snap: str, target: Path, args: tuple[str, ...], progress: Path) -> None:
    stats = json.loads(repo.run("stats", "--json", "--mode", "restore-size", snap).stdout or b"{}")
    total = int(stats.get("total_size") or 0)
    _progress_write(progress, 0.0, 0, total)
    proc = repo.popen(*args, "--json", stdout=subprocess.PIPE)
    reported: dict = {}  # restic's own latest status line, when it prints them

    def read_status() -> None:
        for raw in proc.stdout:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if isinstance(line, dict) and line.get("message_type") == "status":
                    reported.update(line)

    reader = threading.Thread(target=read_status, daemon=True)
    reader.start()
    errors: list[bytes] = []
    err_reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    err_reader.start()
    while True:
        try:
            proc.wait(timeout=PROGRESS_EVERY)
            break
        except subprocess.TimeoutExpired:
            pass
        if "percent_done" in reported:
            done = int(reported.get("bytes_restored") or 0)
            _progress_write(progress, float(reported["percent_done"]) * 100, done,
                            int(reported.get("total_bytes") or total))  # fmt: skip
        else:
            done = _bytes_under(target)
            _progress_write(progress, 100.0 * done / total if total else 0.0, done, total)
    reader.join(timeout=10)
    err_reader.join(timeout=10)
    if proc.returncode != 0:
        raise AgentError(f"restic restore: {_tail(b''.join(errors))}")
    _progress_write(progress, 100.0, total, total)


@OPERATIONS.register("backup_mail_hold")
def mail_hold(node: Node, args: dict) -> dict:
    """Hold a mail domain suspended for a restore (``hold``: true) or let it go (false): a marker
    ``<node root>/mail/held/<domain>/<token>`` that every mail sync meanwhile renders as suspended
    (agent/mail.py ``held_domains``), so a sync another change runs cannot lift the restore's hold.
    The caller renders the mail configuration after (``mail_sync``)."""
    try:
        domain = validate_mail.mail_domain(args.get("domain"), field="domain")
    except Invalid as exc:
        raise AgentError(str(exc), permanent=True) from exc
    token = args.get("token")
    _check(isinstance(token, str) and bool(TOKEN_RE.match(token)), "bad hold token")
    folder = Path(node.root) / "mail" / "held" / domain
    if args.get("hold"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / token).touch()
    else:
        with contextlib.suppress(FileNotFoundError):
            (folder / token).unlink()
        with contextlib.suppress(OSError):  # still held by another restore: not empty, kept
            folder.rmdir()
    return {"domain": domain, "held": args.get("hold", False)}


@OPERATIONS.register("backup_restore_progress")
def restore_progress(node: Node, args: dict) -> dict:
    """How far the restore with this token is: ``{percent, bytes_done, bytes_total}``, ``{}`` before
    it starts or after it ended."""
    path = _progress_path(node, args.get("token"))
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _swap_in(staged: Path, live: Path) -> None:
    """The staged tree takes the live one's place in two renames; the live root's owner and mode
    (not in the snapshot: it was taken from inside) carry over."""
    if live.exists():
        st = live.stat()
        os.chown(staged, st.st_uid, st.st_gid)
        os.chmod(staged, st.st_mode & 0o7777)
    elif live.parent.exists():  # a new mailbox has no Maildir before its first mail: its domain's owner, private
        st = live.parent.stat()
        os.chown(staged, st.st_uid, st.st_gid)
        os.chmod(staged, 0o700)
    old = live.with_name(f".{live.name}.old-{uuid.uuid4().hex[:8]}")
    if live.exists():
        os.rename(live, old)
    live.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staged, live)
    shutil.rmtree(old, ignore_errors=True)


def _merge_into(staged: Path, live: Path) -> None:
    """A running container holds its rootfs folders themselves (its root after pivot_root, and the
    folders its /proc, /sys and /dev are mounted on): folders present on both sides stay and are
    merged, everything else is replaced by a rename, while the container is paused."""
    live.mkdir(parents=True, exist_ok=True)
    wanted = {child.name for child in staged.iterdir()}
    for child in list(live.iterdir()):
        if child.name not in wanted:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    for child in list(staged.iterdir()):
        target = live / child.name
        both_dirs = child.is_dir() and not child.is_symlink() and target.is_dir() and not target.is_symlink()
        if both_dirs:
            _merge_into(child, target)
            st = child.stat()
            os.chown(target, st.st_uid, st.st_gid)
            os.chmod(target, st.st_mode & 0o7777)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        _move(child, target)


def _move(source: Path, target: Path) -> None:
    """A rename; into a pod's overlay rootfs (another filesystem than the staging folder: ``EXDEV``),
    a copy that keeps owners, modes, times and links (``cp -a``), then the staged one removed."""
    try:
        os.rename(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    try:
        rootfs.copy_tree(source, target, timeout=3600)
    except OSError as exc:
        raise AgentError(f"the copy into the pod failed: {exc}") from exc
    if source.is_dir() and not source.is_symlink():
        shutil.rmtree(source)
    else:
        source.unlink()


@OPERATIONS.register("backup_restore")
def restore(node: Node, args: dict) -> dict:
    """Restore ``snapshot`` into ``source`` (in place, or another resource of the same kind).
    Trees are staged next to the live one and swapped in whole, so a failed restore changes
    nothing; databases are loaded from ``restic dump`` piped into the client."""
    repo = Repo(node, args.get("repository"))
    snap = _snapshot_arg(args)
    src = _source(node, args)
    progress = _progress_path(node, args["progress"]) if args.get("progress") is not None else None
    try:
        return _restore(node, repo, snap, src, progress)
    finally:
        if progress is not None:
            with contextlib.suppress(OSError):
                progress.unlink()


def _restore(node: Node, repo: Repo, snap: str, src: dict, progress: Path | None) -> dict:
    repo.unlock()
    if src["kind"] in ("postgresql", "mariadb"):
        _load(repo, snap, src, src["name"], progress)
        return {"restored": snap, "rows": _counts(src)}
    if src["kind"] == "zone":
        text = repo.run("dump", snap, STDIN_NAMES["zone"]).stdout.decode()
        return {"restored": snap, "text": text}
    stage = _base(node) / "stage" / uuid.uuid4().hex
    live: Path = src["path"]
    staged = live.parent / f".{live.name}.restore-{uuid.uuid4().hex[:8]}"  # same filesystem: rename works
    try:
        _restore_tree(repo, snap, stage, progress=progress)
        os.rename(stage, staged)
        with _paused(node, src):
            if src["kind"] == "pod":
                _merge_into(staged, live)
            else:
                _swap_in(staged, live)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(staged, ignore_errors=True)
    return {"restored": snap, "files": sum(1 for p in live.rglob("*") if p.is_file())}


def _load(repo: Repo, snap: str, src: dict, name: str, progress: Path | None = None) -> None:
    if progress is not None:
        _load_watched(repo, snap, src, name, progress)
        return
    dump = repo.popen("dump", snap, STDIN_NAMES[src["kind"]], stdout=subprocess.PIPE)
    try:
        load = subprocess.run(_load_command(src, name), stdin=dump.stdout, capture_output=True, env=_db_env(src),
                              timeout=TIMEOUT)  # fmt: skip
    finally:
        dump.stdout.close()
        dump.wait(timeout=60)
    if dump.returncode != 0:
        raise AgentError(f"restic dump: {_tail(dump.stderr.read())}")
    if load.returncode != 0:
        raise AgentError(f"{src['kind']} restore failed: {_tail(load.stderr)}")


LOAD_CHUNK = 1024 * 1024


def _load_watched(repo: Repo, snap: str, src: dict, name: str, progress: Path) -> None:
    """The same load with its progress: the dump passes through here on its way to the client, so the
    bytes handed over so far are set against the dump's size in the snapshot (what the client has been
    given, not yet what it has written: the last chunk's work is the step from there to 100)."""
    stats = json.loads(repo.run("stats", "--json", "--mode", "restore-size", snap).stdout or b"{}")
    total = int(stats.get("total_size") or 0)
    _progress_write(progress, 0.0, 0, total)
    dump = repo.popen("dump", snap, STDIN_NAMES[src["kind"]], stdout=subprocess.PIPE)
    load = subprocess.Popen(_load_command(src, name), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=_db_env(src))  # fmt: skip
    errors: list[bytes] = []
    err_reader = threading.Thread(target=lambda: errors.append(load.stderr.read()), daemon=True)
    err_reader.start()
    done, written_at = 0, time.monotonic()
    try:
        while chunk := dump.stdout.read1(LOAD_CHUNK):
            try:
                load.stdin.write(chunk)
            except BrokenPipeError:
                break  # the client stopped (an error): its own message says why, below
            done += len(chunk)
            if time.monotonic() - written_at >= PROGRESS_EVERY:
                _progress_write(progress, 100.0 * done / total if total else 0.0, done, total)
                written_at = time.monotonic()
        with contextlib.suppress(BrokenPipeError):
            load.stdin.close()
        load.wait(timeout=TIMEOUT)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
        dump.stdout.close()
        if dump.poll() is None:
            dump.kill()
        dump.wait(timeout=60)
    err_reader.join(timeout=10)
    if load.returncode != 0:
        raise AgentError(f"{src['kind']} restore failed: {_tail(b''.join(errors))}")
    if dump.returncode != 0:
        raise AgentError(f"restic dump: {_tail(dump.stderr.read())}")
    _progress_write(progress, 100.0, total, total)


@OPERATIONS.register("backup_forget")
def forget(node: Node, args: dict) -> dict:
    """Retention for one resource: ``restic forget --prune`` with the policy's keep-* rules. Final
    snapshots (a deleted resource's) are kept; the panel forgets them by id when they expire.
    ``ids``: forget these snapshots instead."""
    repo = Repo(node, args.get("repository"))
    host, _reason = _ids({**args, "reason": "manual"})
    repo.unlock()
    ids = args.get("ids")
    if ids is not None:
        _check(isinstance(ids, list) and all(isinstance(i, str) and SNAPSHOT_RE.match(i) for i in ids), "bad ids")
        if ids:
            repo.run("forget", "--prune", *ids)
    else:
        keep = args.get("keep") or {}
        rules = []
        for key in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
            value = keep.get(key)
            if value:
                _check(isinstance(value, int) and 0 < value < 100000, f"bad keep-{key}")
                rules += [f"--keep-{key}", str(value)]
        _check(bool(rules), "a retention rule is required")
        repo.run("forget", "--prune", "--host", host, "--group-by", "host", "--keep-tag", "reason-final", *rules)
    kept = [s["id"] for s in repo.snapshots(host)]
    return {**_stats(repo), "kept": kept}


@OPERATIONS.register("backup_check")
def check(node: Node, args: dict) -> dict:
    """``restic check``, reading ``subset`` ("n/m") of the data; ``ok`` False and restic's words
    when it finds damage."""
    repo = Repo(node, args.get("repository"))
    subset = args.get("subset")
    extra: list[str] = []
    if subset == "all":
        extra = ["--read-data"]
    elif subset:
        _check(isinstance(subset, str) and bool(re.match(r"^\d{1,4}/\d{1,4}$", subset)), "bad subset")
        extra = [f"--read-data-subset={subset}"]
    repo.unlock()
    result = repo.run("check", *extra, check=False)
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    return {
        "ok": result.returncode == 0,
        "output": _tail(output, 2000),
        **(_stats(repo) if result.returncode == 0 else {}),
    }


@OPERATIONS.register("backup_unlock")
def unlock(node: Node, args: dict) -> dict:
    repo = Repo(node, args.get("repository"))
    repo.unlock()
    return {"unlocked": True}


@OPERATIONS.register("backup_snapshots")
def snapshots(node: Node, args: dict) -> list:
    repo = Repo(node, args.get("repository"))
    if not repo.exists():
        return []
    return [{"id": s["id"], "host": s.get("hostname", ""), "time": s.get("time"), "tags": s.get("tags") or []}
            for s in repo.snapshots()]  # fmt: skip


def _inner_path(value: object) -> str:
    _check(isinstance(value, str) and 0 < len(value) < 4096 and "\x00" not in value, "bad path")
    parts = [p for p in str(value).split("/") if p not in ("", ".")]
    _check(bool(parts) and ".." not in parts, "bad path")
    return "/" + "/".join(parts)


@OPERATIONS.register("backup_file_stat")
def file_stat(node: Node, args: dict) -> dict:
    """What one path of a snapshot is (``restic ls``): its type and size, before a download."""
    repo = Repo(node, args.get("repository"))
    snap, path = _snapshot_arg(args), _inner_path(args.get("path"))
    result = repo.run("ls", "--json", snap, path)
    for line in result.stdout.decode().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("struct_type") == "node" and entry.get("path") == path:
                return {"path": path, "type": entry.get("type"), "size": int(entry.get("size") or 0)}
    raise AgentError(f"{path} is not in this snapshot", permanent=True)


@OPERATIONS.register("backup_file_read")
def file_read(node: Node, args: dict) -> dict:
    """``length`` bytes at ``offset`` of one file of a snapshot (``restic dump``), hex-encoded: the
    panel streams a download in such pieces, each bounded."""
    repo = Repo(node, args.get("repository"))
    snap, path = _snapshot_arg(args), _inner_path(args.get("path"))
    offset, length = int(args.get("offset") or 0), int(args.get("length") or MAX_READ)
    _check(offset >= 0 and 0 < length <= MAX_READ, "bad range")
    proc = repo.popen("dump", snap, path, stdout=subprocess.PIPE)
    data = b""
    try:
        skipped = 0
        while skipped < offset:
            chunk = proc.stdout.read(min(1 << 20, offset - skipped))
            if not chunk:
                break
            skipped += len(chunk)
        data = proc.stdout.read(length) if skipped == offset else b""
    finally:
        proc.kill()
        proc.wait(timeout=30)
    return {"data": data.hex(), "length": len(data), "eof": len(data) < length}


def _tree_manifest(root: Path) -> dict[str, tuple[str, int, str]]:
    """path -> (type, size, sha256) of a tree on disk."""
    out: dict[str, tuple[str, int, str]] = {}
    for path in sorted(root.rglob("*")):
        rel = "/" + path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = ("symlink", 0, "")
        elif path.is_dir():
            out[rel] = ("dir", 0, "")
        elif path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            out[rel] = ("file", path.stat().st_size, digest.hexdigest())
    return out


def _snapshot_listing(repo: Repo, snap: str) -> dict[str, tuple[str, int]]:
    out = {}
    for line in repo.run("ls", "--json", snap).stdout.decode().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("struct_type") == "node":
                out[entry["path"]] = (entry.get("type"), int(entry.get("size") or 0) if entry.get("type") == "file"
                                      else 0)  # fmt: skip
    return out


@OPERATIONS.register("backup_drill")
def drill(node: Node, args: dict) -> dict:
    """Restore ``snapshot`` into scratch and compare it with the snapshot: for a tree, restic's own
    verification of every restored file's content (``restore --verify``: the chunk hashes of the
    snapshot) and every path, type and size against ``restic ls``, with a SHA-256 of each file; for a
    database, a scratch database loaded from the dump and its row count per table against
    ``expected_rows`` (the backup's). Scratch is removed whatever the outcome."""
    repo = Repo(node, args.get("repository"))
    snap = _snapshot_arg(args)
    src = _source(node, args)
    repo.unlock()
    problems: list[str] = []
    detail: dict = {}
    try:
        if src["kind"] in ("postgresql", "mariadb"):
            detail = _drill_database(repo, snap, src, args.get("expected_rows") or {}, problems)
        elif src["kind"] == "zone":
            text = repo.run("dump", snap, STDIN_NAMES["zone"]).stdout.decode()
            detail = {"bytes": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}
            if "SOA" not in text:
                problems.append("the zone file has no SOA record")
        else:
            scratch = _base(node) / "scratch" / uuid.uuid4().hex
            try:
                _restore_tree(repo, snap, scratch, verify=True)
                listed, restored = _snapshot_listing(repo, snap), _tree_manifest(scratch)
                for path, (kind, size) in listed.items():
                    got = restored.get(path)
                    if got is None:
                        problems.append(f"{path}: missing after restore")
                    elif got[0] != kind or (kind == "file" and got[1] != size):
                        problems.append(f"{path}: {got[0]} of {got[1]} bytes, the snapshot says {kind} of {size}")
                files = {p: v for p, v in restored.items() if v[0] == "file"}
                digest = hashlib.sha256("".join(f"{p}\0{v[2]}\n" for p, v in files.items()).encode()).hexdigest()
                detail = {"files": len(files), "bytes": sum(v[1] for v in files.values()), "sha256": digest}
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    except AgentError as exc:
        problems.append(exc.message)
    return {"ok": not problems, "problems": problems[:50], **detail}


def _drill_database(repo: Repo, snap: str, src: dict, expected: dict, problems: list[str]) -> dict:
    scratch = f"mpdrill_{uuid.uuid4().hex[:12]}"
    if src["kind"] == "postgresql":
        _psql(src, "postgres", f'CREATE DATABASE "{scratch}" TEMPLATE template0')
    else:
        _mariadb_query(src, None, f"CREATE DATABASE `{scratch}`")
    try:
        _load(repo, snap, src, scratch)
        rows = _counts(src, scratch)
    finally:
        if src["kind"] == "postgresql":
            _psql(src, "postgres", f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        else:
            _mariadb_query(src, None, f"DROP DATABASE IF EXISTS `{scratch}`")
    for table, count in sorted(expected.items()):
        if rows.get(table) != count:
            problems.append(f"table {table}: {rows.get(table)} rows restored, {count} backed up")
    return {"tables": len(rows), "rows": rows}
