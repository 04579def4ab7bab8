"""PHP-FPM pools and system users for websites, node side.

Each PHP site gets a pool of its own that runs as the site's system user, listens on a socket
only nginx can talk to (mode 0660, group ``$MPANEL_PHPFPM_LISTEN_GROUP``, default ``www-data``),
and is confined to the site's files (``open_basedir``, its own tmp and session folders). A pool
that runs as another site's user would let one customer's code read another's files, so the
socket is never world-writable and the pool never falls back to root.

Layout under ``<node root>/web/php``:
    <version>/php-fpm.conf   the master's configuration (written by the agent unless
                             ``$MPANEL_PHPFPM_CONF`` names the node's own, e.g.
                             ``/etc/php/{version}/fpm/php-fpm.conf``; it must include the pool folder)
    <version>/pool.d/        one ``<site>.conf`` per PHP site
    run/<site>.sock          the pool's socket (what nginx's ``fastcgi_pass`` names); the folder is
                             ``$MPANEL_PHPFPM_RUN_DIR`` when set (a socket path is at most 107 bytes)

Like nginx, a change is checked whole before it is swapped in: the master configuration is copied
with its pool ``include`` pointing at a staging copy of every pool plus the candidate, and
``php-fpm<version> -t -y`` runs on it. Then the pool file is renamed into place and a running
master is told to reload (SIGUSR2). A stopped master is fine: it reads the files when it starts.

System users (``$MPANEL_WEB_SYSTEM_USERS=1`` on nodes where the agent runs as root): each site
gets a locked, shell-less system user whose home is the site's folder; ``site_purge`` removes it.
Without it, pools run as ``$MPANEL_PHPFPM_DEFAULT_USER`` (``www-data``).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from .errors import AgentError
from .validate import Invalid
from .validate import web as rules

VERSION_RE = rules.PHP_RE
USER_RE = rules.USER_RE


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise AgentError(message, permanent=True)


def installed_versions() -> list[str]:
    """PHP-FPM versions this node can run (Debian names the binary ``php-fpm<version>``)."""
    found = set()
    for folder in ("/usr/sbin", "/usr/local/sbin"):
        for path in Path(folder).glob("php-fpm[5-8].[0-9]"):
            if os.access(path, os.X_OK):
                found.add(path.name.removeprefix("php-fpm"))
    return sorted(found)


def manage_users() -> bool:
    return os.environ.get("MPANEL_WEB_SYSTEM_USERS", "0") == "1"


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def owned_by_site(name: str, home: Path) -> bool:
    """An existing user belongs to the site when its home is the site's folder (the node made it so)."""
    try:
        return Path(pwd.getpwnam(name).pw_dir) == home
    except KeyError:
        return False


def site_user(name: str, home: Path) -> str | None:
    """The user the site's files and PHP run as, or None (the node does not manage users).

    A name that already exists for anything but this site (root, www-data, another site's user) is
    refused: running a customer's code or giving its files to such a user is the one thing the node
    must never do.
    """
    try:
        rules.system_user(name)
    except Invalid as exc:
        raise AgentError(f"bad system user {name!r}: {exc.message}", permanent=True) from None
    if user_exists(name):
        _check(owned_by_site(name, home), f"system user {name!r} exists on this node and is not this site's")
        return name
    if not manage_users():
        return None
    result = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(home),
         "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if result.returncode != 0 and not owned_by_site(name, home):  # a concurrent call may have made it
        raise AgentError(f"useradd {name} failed: {result.stderr.strip()[-500:]}")
    return name


def remove_user(name: str, home: Path) -> bool:
    """Delete the site's user, only if it is the one the node made for that site."""
    if not manage_users() or not USER_RE.match(name) or not owned_by_site(name, home):
        return False
    result = subprocess.run(["userdel", name], capture_output=True, text=True, timeout=30)
    if result.returncode != 0 and user_exists(name):
        raise AgentError(f"userdel {name} failed: {result.stderr.strip()[-500:]}")
    return True


class PhpRuntime:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()  # <node root>/web/php
        self.stage = self.root / "stage"
        self._lock = threading.Lock()

    # --- settings read at call time (the agent's environment) ------------------------------------
    @staticmethod
    def binary(version: str) -> str:
        return os.environ.get("MPANEL_PHPFPM_BIN", "").replace("{version}", version) or f"/usr/sbin/php-fpm{version}"

    @staticmethod
    def listen_group() -> str:
        return os.environ.get("MPANEL_PHPFPM_LISTEN_GROUP", "www-data")

    @staticmethod
    def default_user() -> str:
        return os.environ.get("MPANEL_PHPFPM_DEFAULT_USER", "www-data")

    def pools(self, version: str) -> Path:
        return self.root / version / "pool.d"

    @property
    def run(self) -> Path:
        return Path(os.environ.get("MPANEL_PHPFPM_RUN_DIR") or self.root / "run")

    def socket(self, site_id: str) -> Path:
        path = self.run / f"{site_id}.sock"
        # A Unix socket's path is at most 107 bytes; a deep node root needs a shorter run folder.
        _check(len(os.fsencode(path)) <= 107, f"socket path {path} is too long: set MPANEL_PHPFPM_RUN_DIR")
        return path

    def main_conf(self, version: str) -> Path:
        configured = os.environ.get("MPANEL_PHPFPM_CONF")
        if configured:
            return Path(configured.replace("{version}", version))
        conf = self.root / version / "php-fpm.conf"
        if not conf.exists():
            conf.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(conf, default_main_conf(self.pools(version), self.root / version))
        return conf

    # --- rendering --------------------------------------------------------------------------------
    def render(self, *, site_id: str, user: str, home: Path) -> str:
        _check(bool(USER_RE.match(user)), f"bad pool user {user!r}")
        tmp = home / ".tmp"
        return "\n".join(
            [
                f"; mPanel website {site_id}. Rendered by the node agent; edits are overwritten.",
                f"[{site_id}]",
                f"user = {user}",
                f"group = {_primary_group(user)}",
                f"listen = {self.socket(site_id)}",
                f"listen.owner = {user}",
                f"listen.group = {self.listen_group()}",
                "listen.mode = 0660",
                "pm = ondemand",
                "pm.max_children = 5",
                "pm.process_idle_timeout = 30s",
                "pm.max_requests = 500",
                f"chdir = {home}",
                "security.limit_extensions = .php",
                "catch_workers_output = yes",
                f"php_admin_value[open_basedir] = {home}/:{tmp}/",
                f"php_admin_value[upload_tmp_dir] = {tmp}",
                f"php_admin_value[session.save_path] = {tmp}",
                f"php_admin_value[sys_temp_dir] = {tmp}",
                "php_admin_flag[expose_php] = off",
                "",
            ]
        )

    # --- operations -------------------------------------------------------------------------------
    def pool_ensure(self, *, site_id: str, version: str, user: str, home: Path) -> dict:
        _check(bool(VERSION_RE.match(version)), f"bad PHP version {version!r}")
        _check(version in installed_versions(), f"PHP {version} (php-fpm{version}) is not installed on this node")
        with self._lock:
            self.run.mkdir(parents=True, exist_ok=True)
            os.chmod(self.run, 0o755)  # noqa: S103 - nginx must reach the sockets; each socket is 0660
            tmp = home / ".tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o700)
            if user_exists(user):
                entry = pwd.getpwnam(user)
                os.chown(tmp, entry.pw_uid, entry.pw_gid)
            changed = self._swap(version, site_id, self.render(site_id=site_id, user=user, home=home))
            # A site moved to another PHP version leaves no pool behind under the old one.
            for other in installed_versions():
                if other != version and (self.pools(other) / f"{site_id}.conf").exists():
                    self._swap(other, site_id, None)
                    changed = True
        return {"php_version": version, "pool_user": user, "socket": str(self.socket(site_id)), "changed": changed}

    def pool_remove(self, site_id: str) -> dict:
        removed = []
        with self._lock:
            for version in sorted(p.name for p in self.root.glob("*") if VERSION_RE.match(p.name)):
                if (self.pools(version) / f"{site_id}.conf").exists():
                    self._swap(version, site_id, None)
                    removed.append(version)
        return {"pools_removed": removed}

    def _swap(self, version: str, site_id: str, text: str | None) -> bool:
        pools = self.pools(version)
        pools.mkdir(parents=True, exist_ok=True)
        live = pools / f"{site_id}.conf"
        previous = live.read_text() if live.exists() else None
        if previous == text:
            return False
        conf = self.main_conf(version)
        main_text = conf.read_text()
        marker = f"{pools}/"
        if marker not in main_text:
            raise AgentError(f"{conf} does not include {pools}/*.conf", permanent=True)
        stage = self.stage / f"{version}-{site_id}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(stage, ignore_errors=True)
        staged = stage / "pool.d"
        staged.mkdir(parents=True)
        try:
            for other in pools.glob("*.conf"):
                if other.name != live.name:
                    shutil.copy2(other, staged / other.name)
            if text is not None:
                (staged / live.name).write_text(text)
            if not any(staged.glob("*.conf")):
                # php-fpm refuses a configuration with no pool at all; removing the last one is always fine.
                ok, output = True, ""
            else:
                candidate = stage / "php-fpm.conf"
                candidate.write_text(main_text.replace(marker, f"{staged}/"))
                ok, output = self._test(version, candidate)
            if not ok:
                raise AgentError(f"php-fpm{version} -t refused the pool: {output}", permanent=True)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        if text is None:
            live.unlink(missing_ok=True)
        else:
            _write_atomic(live, text)
        try:
            self._reload(conf)
        except AgentError:
            if previous is None:
                live.unlink(missing_ok=True)
            else:
                _write_atomic(live, previous)
            raise
        return True

    def _test(self, version: str, conf: Path) -> tuple[bool, str]:
        try:
            result = subprocess.run([self.binary(version), "-t", "-y", str(conf)], capture_output=True, text=True,
                                    timeout=60)  # fmt: skip
        except FileNotFoundError as exc:
            raise AgentError(f"php-fpm{version} is not installed on this node", permanent=True) from exc
        return result.returncode == 0, (result.stderr or result.stdout).strip()[-2000:]

    def _reload(self, conf: Path) -> str:
        """Tell the master to re-read its pools. The agent starts and stops a master it configured itself."""
        pid = _master_pid(conf)
        own = not os.environ.get("MPANEL_PHPFPM_CONF")
        version = conf.parent.name
        has_pools = any(self.pools(version).glob("*.conf"))
        if pid:
            if own and not has_pools:
                os.kill(pid, signal.SIGQUIT)  # php-fpm refuses to run without a pool
                return "stopped"
            os.kill(pid, signal.SIGUSR2)  # graceful: running requests finish, the pools are re-read
            return "reloaded"
        if own and has_pools:
            result = subprocess.run([self.binary(version), "-y", str(conf), "-D"], capture_output=True, text=True,
                                    timeout=60)  # fmt: skip
            if result.returncode != 0:
                raise AgentError(f"php-fpm{version} did not start: {(result.stderr or result.stdout).strip()[-1000:]}")
            return "started"
        return "not running"


def default_main_conf(pools: Path, run: Path) -> str:
    return f"""; Written by the mPanel agent; set MPANEL_PHPFPM_CONF to use the node's own php-fpm.conf instead.
[global]
pid = {run}/php-fpm.pid
error_log = {run}/php-fpm.log
daemonize = no
include = {pools}/*.conf
"""


def _master_pid(conf: Path) -> int:
    match = re.search(r"^\s*pid\s*=\s*(\S+)", conf.read_text(), re.M)
    if not match:
        return 0
    try:
        pid = int(Path(match.group(1)).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return 0
    return pid


def _primary_group(user: str) -> str:
    try:
        return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    except KeyError:
        return user


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
