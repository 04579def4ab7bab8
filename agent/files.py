"""A website's files, node side: every path is confined to the site's root.

A path is relative to the site's root (``www/<id>`` of the web runtime), ``""`` or ``"."`` being
the root itself. Refused with a permanent ``AgentError`` (a 400 in the panel), before anything is
touched: absolute paths, ``..`` components, NUL bytes, names over 255 bytes, paths over 1024
bytes, and any path that, once its symlinks are resolved, lies outside the root. Archives are
checked whole before one entry is written: entries that are absolute, climb out (zip-slip),
are links or devices, or would unpack to more than ``max_unpacked`` bytes refuse the archive.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from .errors import AgentError
from .registry import OPERATIONS, Node

MAX_NAME = 255
MAX_PATH = 1024
MAX_READ = 1024 * 1024  # bytes per read call (downloads read in chunks)
MAX_LIST = 5000
DEFAULT_MAX_UNPACKED = 1024**3


class PathRefused(AgentError):
    def __init__(self, message: str):
        super().__init__(message, permanent=True)


def clean(path) -> str:
    """The normalised relative form of a user's path, or ``PathRefused``."""
    if not isinstance(path, str):
        raise PathRefused("path must be a string")
    if "\x00" in path:
        raise PathRefused("path contains a NUL byte")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH:
        raise PathRefused("path is too long")
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise PathRefused("path must be relative to the site's root")
    parts = []
    for part in path.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise PathRefused("path must not contain '..'")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME:
            raise PathRefused("a name in the path is too long")
        parts.append(part)
    return "/".join(parts)


def _within(root: Path, candidate: str) -> bool:
    return candidate == str(root) or candidate.startswith(str(root) + os.sep)


class SiteFiles:
    def __init__(self, root: Path, max_unpacked: int = DEFAULT_MAX_UNPACKED):
        if not root.is_dir():
            raise AgentError("the site has no files on this node", permanent=True)
        self.root = Path(os.path.realpath(root))
        self.max_unpacked = max_unpacked

    # --- confinement -------------------------------------------------------------------------
    def resolve(self, path, *, follow_last: bool = True) -> Path:
        """The absolute path for ``path``. With ``follow_last=False`` a final symlink is the
        object itself (rename, delete), but its parent must still lie inside the root."""
        rel = clean(path)
        full = os.path.join(str(self.root), rel) if rel else str(self.root)
        if follow_last or not rel:
            real = os.path.realpath(full)
            if not _within(self.root, real):
                raise PathRefused("path leads outside the site's root")
            return Path(real)
        parent = os.path.realpath(os.path.dirname(full))
        if not _within(self.root, parent):
            raise PathRefused("path leads outside the site's root")
        target = Path(parent) / os.path.basename(full)
        if target.is_symlink() and not _within(self.root, os.path.realpath(target)):
            raise PathRefused("path is a link that leads outside the site's root")
        return target

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.root) if path != self.root else ""

    def _entry(self, path: Path) -> dict:
        st = os.lstat(path)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
        return {
            "name": path.name,
            "path": self.rel(path),
            "type": kind,
            "size": st.st_size,
            "mode": f"{stat.S_IMODE(st.st_mode):04o}",
            "modified": st.st_mtime,
        }

    def _existing(self, path, **kw) -> Path:
        full = self.resolve(path, **kw)
        if not os.path.lexists(full):
            raise AgentError(f"no such file or directory: {clean(path) or '/'}", permanent=True)
        return full

    # --- reads ------------------------------------------------------------------------------------
    def list(self, path="") -> dict:
        full = self._existing(path)
        if not full.is_dir():
            raise AgentError("not a directory", permanent=True)
        entries = []
        with os.scandir(full) as it:
            for entry in it:
                entries.append(self._entry(Path(entry.path)))
                if len(entries) >= MAX_LIST:
                    break
        entries.sort(key=lambda e: (e["type"] != "dir", e["name"]))
        return {"path": self.rel(full), "entries": entries}

    def stat(self, path) -> dict:
        return self._entry(self._existing(path))

    def read(self, path, offset: int = 0, length: int = MAX_READ) -> dict:
        full = self._existing(path)
        if not full.is_file():
            raise AgentError("not a regular file", permanent=True)
        length = max(0, min(int(length), MAX_READ))
        with open(full, "rb") as fh:
            fh.seek(max(0, int(offset)))
            data = fh.read(length)
        return {"data": base64.b64encode(data).decode(), "size": full.stat().st_size, "eof": len(data) < length}

    # --- writes -----------------------------------------------------------------------------------
    def write(self, path, data: str, *, append: bool = False, overwrite: bool = True) -> dict:
        full = self.resolve(path)
        if full == self.root or full.is_dir():
            raise AgentError("a directory is in the way", permanent=True)
        if not full.parent.is_dir():
            raise AgentError("the parent directory does not exist", permanent=True)
        raw = base64.b64decode(data, validate=True)
        if append:
            with open(full, "ab") as fh:
                fh.write(raw)
        else:
            if full.exists() and not overwrite:
                raise AgentError("the file exists already", permanent=True)
            fd, tmp = tempfile.mkstemp(dir=full.parent, prefix=".mp-upload-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(raw)
                os.chmod(tmp, 0o644)
                os.replace(tmp, full)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return self._entry(full)

    def mkdir(self, path) -> dict:
        full = self.resolve(path)
        if full == self.root:
            raise AgentError("the root exists already", permanent=True)
        full.mkdir(parents=True, exist_ok=True)
        # parents=True may create intermediate directories: they all lie inside (the path was checked).
        return self._entry(full)

    def move(self, source, target, *, replace: bool = False) -> dict:
        """``replace``: a regular file may be replaced by a regular file (an upload's last step)."""
        src = self._existing(source, follow_last=False)
        dst = self.resolve(target, follow_last=False)
        if src == self.root or dst == self.root:
            raise AgentError("the root cannot be moved", permanent=True)
        if os.path.lexists(dst):
            replaceable = replace and dst.is_file() and not dst.is_symlink() and src.is_file() and not src.is_symlink()
            if not replaceable:
                raise AgentError("the target exists already", permanent=True)
            os.replace(src, dst)
            return self._entry(dst)
        if src.is_dir() and not src.is_symlink() and _within(src, str(dst)):
            raise AgentError("a directory cannot move into itself", permanent=True)
        os.rename(src, dst)
        return self._entry(dst)

    def copy(self, source, target) -> dict:
        src = self._existing(source)
        dst = self.resolve(target, follow_last=False)
        if os.path.lexists(dst):
            raise AgentError("the target exists already", permanent=True)
        if src.is_dir():
            if _within(src, str(dst)):
                raise AgentError("a directory cannot be copied into itself", permanent=True)
            self._refuse_links_out(src)
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst)
        return self._entry(dst)

    def delete(self, path) -> dict:
        full = self._existing(path, follow_last=False)
        if full == self.root:
            raise AgentError("the root cannot be deleted", permanent=True)
        if full.is_dir() and not full.is_symlink():
            shutil.rmtree(full)
        else:
            full.unlink()
        return {"path": clean(path), "deleted": True}

    def chmod(self, path, mode) -> dict:
        full = self._existing(path)
        try:
            value = int(str(mode), 8)
        except ValueError as exc:
            raise AgentError("mode must be octal, e.g. 0644", permanent=True) from exc
        if not 0 <= value <= 0o777:
            raise AgentError("mode must be between 0000 and 0777 (no setuid, setgid or sticky bits)", permanent=True)
        os.chmod(full, value)
        return self._entry(full)

    def _refuse_links_out(self, directory: Path) -> None:
        for dirpath, dirnames, filenames in os.walk(directory):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                if os.path.islink(p) and not _within(self.root, os.path.realpath(p)):
                    raise PathRefused(f"{self.rel(Path(p))} is a link that leads outside the site's root")

    # --- archives ---------------------------------------------------------------------------------
    def compress(self, paths: list, target, fmt: str) -> dict:
        if fmt not in ("zip", "tar.gz"):
            raise AgentError("format must be zip or tar.gz", permanent=True)
        if not isinstance(paths, list) or not paths:
            raise AgentError("name at least one path to compress", permanent=True)
        sources = [self._existing(p) for p in paths]
        dst = self.resolve(target)
        if os.path.lexists(dst):
            raise AgentError("the target exists already", permanent=True)
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".mp-archive-")
        os.close(fd)
        try:
            members = []
            for src in sources:
                if src.is_dir():
                    for dirpath, dirnames, filenames in os.walk(src):
                        dirnames.sort()
                        for name in sorted(filenames):
                            p = Path(dirpath) / name
                            if not p.is_symlink() and p.is_file() and p != dst:
                                members.append(p)
                elif src != dst:
                    members.append(src)
            base = sources[0].parent if len(sources) == 1 else self.root
            if fmt == "zip":
                with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                    for p in members:
                        zf.write(p, os.path.relpath(p, base))
            else:
                with tarfile.open(tmp, "w:gz") as tf:
                    for p in members:
                        tf.add(p, os.path.relpath(p, base), recursive=False)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return {**self._entry(dst), "members": len(members)}

    def extract(self, archive, target="") -> dict:
        src = self._existing(archive)
        dest = self.resolve(target)
        if not dest.is_dir():
            raise AgentError("the target must be an existing directory", permanent=True)
        name = src.name.lower()
        if name.endswith(".zip"):
            return self._extract_zip(src, dest)
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            return self._extract_tar(src, dest)
        raise AgentError("only .zip, .tar.gz, .tgz and .tar archives can be extracted", permanent=True)

    def _member_target(self, dest: Path, member: str) -> Path:
        if "\x00" in member or member.startswith(("/", "\\")) or (len(member) > 1 and member[1] == ":"):
            raise PathRefused(f"archive entry {member!r} is absolute")
        parts = [p for p in member.replace("\\", "/").split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts) or any(len(p.encode()) > MAX_NAME for p in parts):
            raise PathRefused(f"archive entry {member!r} leads outside the target")
        full = Path(os.path.realpath(os.path.join(dest, *parts))) if parts else dest
        if not _within(self.root, str(full)):
            raise PathRefused(f"archive entry {member!r} leads outside the site's root")
        return full

    def _extract_zip(self, src: Path, dest: Path) -> dict:
        try:
            zf = zipfile.ZipFile(src)
        except zipfile.BadZipFile as exc:
            raise AgentError("not a valid zip archive", permanent=True) from exc
        with zf:
            infos = zf.infolist()
            plan, total = [], 0
            for info in infos:  # check everything first: a refused archive touches nothing
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode) or (mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))):
                    raise PathRefused(f"archive entry {info.filename!r} is a link or a device")
                total += info.file_size
                plan.append((info, self._member_target(dest, info.filename)))
            if total > self.max_unpacked:
                raise PathRefused("the archive unpacks to more than the allowed size")
            for info, full in plan:
                if info.is_dir():
                    full.mkdir(parents=True, exist_ok=True)
                    continue
                full.parent.mkdir(parents=True, exist_ok=True)
                if full.is_symlink():
                    full.unlink()
                with zf.open(info) as fh, open(full, "wb") as out:
                    shutil.copyfileobj(fh, out)
        return {"extracted": len(plan), "target": self.rel(dest)}

    def _extract_tar(self, src: Path, dest: Path) -> dict:
        try:
            tf = tarfile.open(src)  # noqa: SIM115  (closed by the with below)
        except (tarfile.TarError, OSError) as exc:
            raise AgentError("not a valid tar archive", permanent=True) from exc
        with tf:
            members = tf.getmembers()
            plan, total = [], 0
            for m in members:
                if not (m.isreg() or m.isdir()):
                    raise PathRefused(f"archive entry {m.name!r} is a link or a device")
                total += m.size
                plan.append((m, self._member_target(dest, m.name)))
            if total > self.max_unpacked:
                raise PathRefused("the archive unpacks to more than the allowed size")
            for m, full in plan:
                if m.isdir():
                    full.mkdir(parents=True, exist_ok=True)
                    continue
                full.parent.mkdir(parents=True, exist_ok=True)
                if full.is_symlink():
                    full.unlink()
                with tf.extractfile(m) as fh, open(full, "wb") as out:
                    shutil.copyfileobj(fh, out)
        return {"extracted": len(plan), "target": self.rel(dest)}


def as_site_owner(root: Path, operation):
    """Run ``operation`` as the owner of the site's files when that is a user other than the agent's.

    Confinement is checked before each operation, but a site's own code (PHP runs as its user) can
    swap a folder for a symlink between that check and the operation. In a child process that has
    dropped to the site's user such a race can only reach what the user may touch anyway. The
    result comes back as JSON, an ``AgentError`` as its message; anything else is a node error.
    """
    try:
        st = root.stat()
    except FileNotFoundError:
        return operation()  # SiteFiles says "the site has no files on this node"
    if os.geteuid() != 0 or st.st_uid == 0:
        return operation()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(st.st_gid)
            os.setuid(st.st_uid)
            try:
                answer = {"result": operation()}
            except AgentError as exc:
                answer = {"error": exc.message, "permanent": exc.permanent}
            except OSError as exc:
                answer = {"error": f"{exc.strerror or exc}", "permanent": True}
            except Exception as exc:  # the parent raises it as a node error: the child must always answer
                answer = {"error": f"{type(exc).__name__}: {exc}", "permanent": False}
            with os.fdopen(write_end, "w") as out:
                json.dump(answer, out)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as incoming:
        data = incoming.read()
    os.waitpid(pid, 0)
    try:
        answer = json.loads(data)
    except ValueError:
        raise AgentError("the file operation failed on the node") from None
    if "error" in answer:
        raise AgentError(answer["error"], permanent=bool(answer.get("permanent")))
    return answer["result"]


# --- the file operations (agent.dispatch calls them by name) --------------------------------------

FileOperation = Callable[[SiteFiles, dict], dict]


def _site(args: dict) -> str:
    site_id = args.get("site")
    if not isinstance(site_id, str):
        raise AgentError("a site id is required", permanent=True)
    return site_id


def file_operation(name: str) -> Callable[[FileOperation], FileOperation]:
    """Register ``body(files, args)`` as the operation ``name``: it runs on the site's files
    (``args["site"]``), as the site's owner (``as_site_owner``), within ``args["max_unpacked"]``."""

    def register(body: FileOperation) -> FileOperation:
        @functools.wraps(body)
        def operation(node: Node, args: dict):
            site_id = _site(args)
            try:
                max_unpacked = int(args.get("max_unpacked") or DEFAULT_MAX_UNPACKED)
            except (TypeError, ValueError) as exc:
                raise AgentError("max_unpacked must be a number", permanent=True) from exc
            root = node.web.site_dir(site_id)
            return as_site_owner(root, lambda: body(SiteFiles(root, max_unpacked), args))

        OPERATIONS.register(name)(operation)
        return body

    return register


@file_operation("file_list")
def file_list(f: SiteFiles, a: dict) -> dict:
    return f.list(a.get("path", ""))


@file_operation("file_stat")
def file_stat(f: SiteFiles, a: dict) -> dict:
    return f.stat(a.get("path"))


@file_operation("file_read")
def file_read(f: SiteFiles, a: dict) -> dict:
    return f.read(a.get("path"), int(a.get("offset", 0)), int(a.get("length", MAX_READ)))


@file_operation("file_write")
def file_write(f: SiteFiles, a: dict) -> dict:
    return f.write(a.get("path"), a.get("data", ""), append=bool(a.get("append")), overwrite=a.get("overwrite", True))


@file_operation("file_mkdir")
def file_mkdir(f: SiteFiles, a: dict) -> dict:
    return f.mkdir(a.get("path"))


@file_operation("file_move")
def file_move(f: SiteFiles, a: dict) -> dict:
    return f.move(a.get("source"), a.get("target"), replace=bool(a.get("replace")))


@file_operation("file_copy")
def file_copy(f: SiteFiles, a: dict) -> dict:
    return f.copy(a.get("source"), a.get("target"))


@file_operation("file_delete")
def file_delete(f: SiteFiles, a: dict) -> dict:
    return f.delete(a.get("path"))


@file_operation("file_chmod")
def file_chmod(f: SiteFiles, a: dict) -> dict:
    return f.chmod(a.get("path"), a.get("mode"))


@file_operation("file_compress")
def file_compress(f: SiteFiles, a: dict) -> dict:
    return f.compress(a.get("paths"), a.get("target"), a.get("format", "zip"))


@file_operation("file_extract")
def file_extract(f: SiteFiles, a: dict) -> dict:
    return f.extract(a.get("archive"), a.get("target", ""))


# --- Guardian: world-writable entries in a site's files (read-only, run by the guardian.scan job) ---


def world_writable(root: Path, *, max_entries: int = 50_000, max_seconds: float = 20.0, max_report: int = 50) -> dict:
    """Files and folders under ``root`` that anyone on the node may write (mode ``o+w``).

    Reads metadata only (``lstat``), never follows a symlink (a link's own mode means nothing,
    and following one could walk out of the site), and stops after ``max_entries`` entries or
    ``max_seconds``: a site with millions of files must not hold the job. ``complete`` says
    whether the whole tree was seen; ``count`` is every hit seen, ``paths`` the first ``max_report``.
    """
    if not root.is_dir():
        raise AgentError("the site has no files on this node", permanent=True)
    deadline = time.monotonic() + max_seconds
    found: list[dict] = []
    count = scanned = 0
    complete = True

    def note(path: str, st_mode: int, kind: str) -> None:
        nonlocal count
        if st_mode & stat.S_IWOTH:
            count += 1
            if len(found) < max_report:
                found.append({"path": path or ".", "type": kind, "mode": f"{stat.S_IMODE(st_mode):04o}"})

    note("", os.lstat(root).st_mode, "dir")
    stack = [(root, "")]
    while stack:
        folder, rel = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    scanned += 1
                    if scanned > max_entries or time.monotonic() > deadline:
                        complete = False
                        break
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # vanished meanwhile
                    if stat.S_ISLNK(st.st_mode):
                        continue
                    path = f"{rel}/{entry.name}" if rel else entry.name
                    is_dir = stat.S_ISDIR(st.st_mode)
                    note(path, st.st_mode, "dir" if is_dir else "file")
                    if is_dir:
                        stack.append((Path(entry.path), path))
        except OSError:
            continue  # unreadable folder: nothing to say about its contents
        if not complete:
            break
    return {"paths": found, "count": count, "scanned": min(scanned, max_entries), "complete": complete}


@OPERATIONS.register("site_world_writable")
def site_world_writable(node: Node, args: dict) -> dict:
    """Read-only, for Guardian (apps/security/checks): what a site's files look like on the node."""
    site_id = _site(args)
    try:
        limits = {k: int(args[k]) for k in ("max_entries", "max_seconds", "max_report") if k in args}
    except (TypeError, ValueError) as exc:
        raise AgentError("the walk's limits must be numbers", permanent=True) from exc
    return world_writable(node.web.site_dir(site_id), **limits)
