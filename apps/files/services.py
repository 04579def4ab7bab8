"""The file manager's calls to a website's node (``agent.files`` does the confinement there).

Reads and writes go to the node at once through its driver (they change a site's content, not
the infrastructure, and the user waits for them); every write is audited on the website.
A path the node refuses (outside the root, ``..``, NUL, too long, a link out, zip-slip) is a 400.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Iterator

from django.conf import settings

from apps.audit import services as audit
from apps.common.exceptions import Conflict, DomainError, InvalidInput
from apps.nodes.drivers import NodeError, driver_for
from apps.websites.models import Website, WebsiteStatus

CHUNK = 512 * 1024  # per write call: base64 keeps an agent request under its 1 MiB limit


class NodeUnavailable(DomainError):
    status_code = 503
    code = "node_unavailable"


def _call(site: Website, op: str, **args) -> dict:
    if site.status in (WebsiteStatus.DELETING, WebsiteStatus.DELETED):
        raise Conflict(f"This website is {site.status}: its files are not reachable.")
    try:
        return driver_for(site.node, timeout=settings.MPANEL_NODE_READ_TIMEOUT * 4).file_op(op, site.site_id, **args)
    except NodeError as exc:
        if exc.permanent:
            raise InvalidInput(exc.message.removeprefix("agent: "), field="path") from exc
        raise NodeUnavailable(exc.message) from exc


def _audit(site: Website, action: str, actor, **details) -> None:
    audit.record(action=f"website.files.{action}", obj=site, actor=actor, after=details)


def file_list(*, website: Website, path: str = "") -> dict:
    return _call(website, "list", path=path)


def file_stat(*, website: Website, path: str) -> dict:
    return _call(website, "stat", path=path)


def file_read(*, website: Website, path: str, max_bytes: int) -> dict:
    result = _call(website, "read", path=path, offset=0, length=max_bytes)
    data = base64.b64decode(result["data"])
    if result["size"] > max_bytes:
        raise InvalidInput(f"The file is larger than {max_bytes} bytes: download it instead.", field="path")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("The file is not UTF-8 text: download it instead.", field="path") from exc
    return {"path": path, "size": result["size"], "content": text}


def file_chunks(*, website: Website, path: str) -> tuple[dict, Iterator[bytes]]:
    """The file's entry and an iterator over its bytes, read from the node one chunk at a time."""
    entry = _call(website, "stat", path=path)
    if entry["type"] != "file":
        raise InvalidInput("Not a regular file.", field="path")

    def chunks():
        offset = 0
        while True:
            result = _call(website, "read", path=path, offset=offset, length=1024 * 1024)
            data = base64.b64decode(result["data"])
            if data:
                yield data
                offset += len(data)
            if result["eof"] or not data:
                return

    return entry, chunks()


def file_write(*, website: Website, path: str, content: bytes, actor=None) -> dict:
    entry = _write(website, path, [content])
    _audit(website, "write", actor, path=entry["path"], size=entry["size"])
    return entry


def file_upload(*, website: Website, directory: str, upload, actor=None) -> dict:
    if upload.size > settings.FILES_MAX_UPLOAD_BYTES:
        raise InvalidInput(f"Uploads are limited to {settings.FILES_MAX_UPLOAD_BYTES} bytes.", field="file")
    name = upload.name.replace("\\", "/").rsplit("/", 1)[-1]
    path = f"{directory.rstrip('/')}/{name}" if directory.strip("/") else name
    entry = _write(website, path, upload.chunks(CHUNK))
    _audit(website, "upload", actor, path=entry["path"], size=entry["size"])
    return entry


def _write(site: Website, path: str, chunks) -> dict:
    """Whole files only: one chunk is one atomic write; more go to a hidden staging name in
    the same directory and are renamed over the target at the end."""
    parts = iter(chunks)
    first = next(parts, b"")
    rest = next(parts, None)
    if rest is None and len(first) <= CHUNK:
        return _call(site, "write", path=path, data=base64.b64encode(first).decode())
    directory = path.rsplit("/", 1)[0] if "/" in path.strip("/") else ""
    staging = f"{directory}/.mp-part-{uuid.uuid4().hex}" if directory else f".mp-part-{uuid.uuid4().hex}"
    try:
        chunk, append = first, False
        while chunk is not None:
            for offset in range(0, max(len(chunk), 1), CHUNK):
                piece = chunk[offset : offset + CHUNK]
                _call(site, "write", path=staging, data=base64.b64encode(piece).decode(), append=append)
                append = True
            chunk = rest
            rest = next(parts, None) if rest is not None else None
        return _call(site, "move", source=staging, target=path, replace=True)
    except BaseException:
        with contextlib.suppress(DomainError):
            _call(site, "delete", path=staging)
        raise


def file_mkdir(*, website: Website, path: str, actor=None) -> dict:
    entry = _call(website, "mkdir", path=path)
    _audit(website, "mkdir", actor, path=entry["path"])
    return entry


def file_move(*, website: Website, source: str, target: str, actor=None) -> dict:
    entry = _call(website, "move", source=source, target=target)
    _audit(website, "move", actor, source=source, target=entry["path"])
    return entry


def file_copy(*, website: Website, source: str, target: str, actor=None) -> dict:
    entry = _call(website, "copy", source=source, target=target)
    _audit(website, "copy", actor, source=source, target=entry["path"])
    return entry


def file_delete(*, website: Website, path: str, actor=None) -> dict:
    result = _call(website, "delete", path=path)
    _audit(website, "delete", actor, path=path)
    return result


def file_chmod(*, website: Website, path: str, mode: str, actor=None) -> dict:
    entry = _call(website, "chmod", path=path, mode=mode)
    _audit(website, "chmod", actor, path=entry["path"], mode=entry["mode"])
    return entry


def file_compress(*, website: Website, paths: list[str], target: str, format: str, actor=None) -> dict:
    entry = _call(website, "compress", paths=paths, target=target, format=format)
    _audit(website, "compress", actor, paths=paths, target=entry["path"], format=format)
    return entry


def file_extract(*, website: Website, archive: str, target: str = "", actor=None) -> dict:
    result = _call(website, "extract", archive=archive, target=target, max_unpacked=settings.FILES_MAX_UNPACKED_BYTES)
    _audit(website, "extract", actor, archive=archive, target=target, entries=result["extracted"])
    return result
