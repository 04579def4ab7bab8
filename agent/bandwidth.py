"""Bytes each website served, read from its own nginx access log. Standard library only.

Every vhost (both its servers, the www redirect too) writes ``access_log <web root>/logs/bytes/<site
id>.log combined``; nginx's own ``combined`` format needs no ``log_format`` of ours, and its request
field is escaped (a ``"`` in a request is ``\\x22``), so ``" <status> <bytes> "`` after it is the
response's body bytes. ``site_bandwidth`` adds up the lines written since the last read and keeps its
place in ``<id>.state`` (the file's inode and the offset after the last whole line):

* rotation-safe: when the log's inode is not the one read last (logrotate moved it away), the rest
  of the old file is read first from ``<id>.log.1`` when that is the file read last, then the new
  log from its start; a log shorter than the offset (truncated by ``copytruncate``) is read from 0;
* a line nginx is still writing (no newline yet) is left for the next read.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .errors import AgentError
from .registry import OPERATIONS, Node
from .validate import web as rules

LINE_RE = re.compile(rb'" (\d{3}) (\d+|-) "')
MAX_READ = 1 << 30  # at most 1 GiB of log per read; the rest waits for the next one


def log_dir(web_root: str | os.PathLike) -> Path:
    return Path(web_root) / "logs" / "bytes"


def log_path(web_root: str | os.PathLike, site_id: str) -> Path:
    if not rules.SITE_ID_RE.match(site_id):
        raise AgentError(f"bad site id {site_id!r}", permanent=True)
    return log_dir(web_root) / f"{site_id}.log"


def server_lines(web_root: str | os.PathLike, site_id: str, indent: str = "    ") -> str:
    """The access log directive of each of the site's servers."""
    return f"{indent}access_log {log_path(web_root, site_id)} combined;\n"


def _count(path: Path, offset: int) -> tuple[int, int, int]:
    """(bytes served, requests, offset after the last whole line) of ``path`` from ``offset``."""
    total = requests = 0
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(MAX_READ)
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        m = LINE_RE.search(line)
        if m is None:
            continue
        requests += 1
        if m.group(2) != b"-":
            total += int(m.group(2))
    return total, requests, offset + end


def site_bandwidth(web_root: str | os.PathLike, site_id: str) -> dict:
    """What the site served since the last read: ``{"bytes": n, "requests": k}``."""
    log = log_path(web_root, site_id)
    state_file = log.with_suffix(".state")
    try:
        state = json.loads(state_file.read_text())
        inode, offset = int(state["inode"]), int(state["offset"])
    except (OSError, ValueError, KeyError, TypeError):
        inode, offset = 0, 0
    total = requests = 0
    if not log.exists():
        return {"id": site_id, "bytes": 0, "requests": 0}
    current = log.stat()
    if current.st_ino != inode:
        rotated = log.with_name(log.name + ".1")
        if inode and rotated.exists() and rotated.stat().st_ino == inode:
            b, r, _ = _count(rotated, offset)  # the rest of the file read last
            total, requests = total + b, requests + r
        offset = 0
    elif current.st_size < offset:
        offset = 0  # truncated in place
    b, r, offset = _count(log, offset)
    total, requests = total + b, requests + r
    tmp = state_file.with_name(f".{state_file.name}.new")
    tmp.write_text(json.dumps({"inode": current.st_ino, "offset": offset}))
    os.replace(tmp, state_file)
    return {"id": site_id, "bytes": total, "requests": requests}


@OPERATIONS.register("site_bandwidth")
def site_bandwidth_operation(node: Node, args: dict) -> dict:
    site_id = args.get("id")
    if not isinstance(site_id, str):
        raise AgentError("a site id is required", permanent=True)
    return site_bandwidth(node.web.root, site_id)
