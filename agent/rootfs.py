"""A pod's rootfs as an overlay mount of its image: the image the read-only lower layer, the pod's own
writes in ``bundles/<id>/upper`` (overlayfs' ``workdir`` beside it), the merged view at
``bundles/<id>/rootfs``, where runc and the backups find it.

Why: a new pod then costs one ``mount(2)`` (~1 ms) instead of a copy of the image (``cp -a``: 60 to 500 ms
on an ext4 node under load, most of it creating symlinks), and no copy made ahead of need competes
for the CPU and the disk with the pods being started. Each pod still has its own filesystem: what it
writes lands in its upper layer, never in the image nor in another pod's.

``MPANEL_POD_ROOTFS=copy`` keeps the whole copy per pod (``agent.runtime``'s spares); so does a kernel
or a container that refuses the mount (no overlayfs, no ``CAP_SYS_ADMIN``, an upper layer on a
filesystem overlayfs cannot write to): the runtime falls back to the copy then, pod by pod.

A mount does not survive a node restart while the bundle does: every reader of a pod's rootfs goes
through ``ensure`` (a restart of the pod, its backup and its restore), which mounts it again from
the bundle's ``spec.json`` (its image). A bundle is removed only through ``remove``, which unmounts
first: removing files through a mounted overlay would only hide the image's files from the pod.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

ROOTFS_ENV = "MPANEL_POD_ROOTFS"
MNT_DETACH = 2
# Separators of the mount options string (and whitespace, which mountinfo escapes): a path holding one
# cannot be named in ``lowerdir=…,upperdir=…`` safely, so such a node root copies instead.
_UNSAFE = re.compile(r"[,:\\\s]")
_libc = ctypes.CDLL(None, use_errno=True)


def wanted() -> bool:
    """Whether new pods get an overlay (the default) rather than a copy of their image."""
    return os.environ.get(ROOTFS_ENV, "overlay").strip().lower() != "copy"


def is_overlay(bundle: Path) -> bool:
    """A bundle made as an overlay has its upper layer beside its rootfs."""
    return (bundle / "upper").is_dir()


def _mount(lower: Path, bundle: Path) -> None:
    upper, work, target = bundle / "upper", bundle / "work", bundle / "rootfs"
    if any(_UNSAFE.search(str(p)) for p in (lower, upper, work)):
        raise OSError(errno.EINVAL, "a path the overlay's options cannot name", str(bundle))
    options = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    if _libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, options) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(target))


def prepare(bundle: Path, lower: Path) -> None:
    """``bundle/rootfs`` an overlay of ``lower`` with an empty upper layer; raises ``OSError`` (and
    leaves none of the three folders) when the mount is refused."""
    made = [bundle / "upper", bundle / "work", bundle / "rootfs"]
    try:
        for folder in made:
            folder.mkdir(mode=0o755)
        _mount(lower, bundle)
    except OSError:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    # The merged root takes the upper folder's mode and owner, not the image's: the image's root's.
    st = lower.stat()
    os.chmod(bundle / "rootfs", st.st_mode & 0o7777)
    os.chown(bundle / "rootfs", st.st_uid, st.st_gid)


def ensure(bundle: Path, images: Path) -> Path:
    """The pod's rootfs (``bundle/rootfs``), its overlay mounted again if it is one that is not (the
    node restarted). A missing bundle is left as it is: the caller says what that means. Raises
    ``OSError`` only, an unreadable ``spec.json`` included."""
    target = bundle / "rootfs"
    if is_overlay(bundle) and not os.path.ismount(target):
        try:
            image = json.loads((bundle / "spec.json").read_text())["image"]
        except (ValueError, KeyError, TypeError) as exc:
            raise OSError(errno.EINVAL, f"the bundle's spec.json names no image ({exc})", str(bundle)) from exc
        if not isinstance(image, str) or not image or "/" in image or image.startswith("."):
            raise OSError(errno.EINVAL, "the bundle's spec.json names no image", str(bundle))
        _mount(images / image / "rootfs", bundle)
    return target


def copy_tree(source: Path, target: Path, *, timeout: int = 600) -> None:
    """``target`` a copy of ``source`` (symlinks as links, modes, owners and times kept): ``cp -a``,
    which holds no lock of this process while it copies (a spare refilled in a thread copied
    file by file in Python held the interpreter's lock against the requests served meanwhile);
    ``shutil.copytree`` where there is no ``cp``. Not at a lower priority: on a busy node a starved refill
    of spares leaves the next pod without one, and that pod then waits for a copy of its own. Raises
    ``OSError`` and leaves no half copy."""
    cp = shutil.which("cp")
    if cp is None:
        shutil.copytree(source, target, symlinks=True)
        return
    cmd = [cp, "-a", "--", str(source), str(target)]
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
    if result.returncode != 0:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        elif target.is_symlink() or target.exists():
            target.unlink()
        raise OSError(f"cp -a {source} failed: {result.stderr.strip()[-500:]}")


def unmount(target: Path) -> None:
    """Unmount ``target`` if something is mounted there; detached (lazily) if it is busy."""
    if not os.path.ismount(target):
        return
    path = os.fsencode(target)
    if _libc.umount2(path, 0) == 0:
        return
    code = ctypes.get_errno()
    if code == errno.EBUSY and _libc.umount2(path, MNT_DETACH) == 0:
        return
    if code == errno.EINVAL and not os.path.ismount(target):  # unmounted meanwhile by someone else
        return
    raise OSError(code, os.strerror(code), str(target))


def remove(bundle: Path) -> None:
    """Remove a bundle (or a half-made one), its rootfs unmounted first."""
    unmount(bundle / "rootfs")
    shutil.rmtree(bundle, ignore_errors=True)


def unmount_under(root: Path) -> int:
    """Detach every mount at or below ``root`` (a node root about to be removed: a test's, a wiped
    node's), the deepest first; returns how many there were."""
    prefix = str(Path(root).resolve())
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as info:
        for line in info:
            # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        _libc.umount2(os.fsencode(point), MNT_DETACH)
    return len(points)
