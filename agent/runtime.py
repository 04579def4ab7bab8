"""CloudPods as OCI bundles run by runc, rooted under one directory.

Layout under ``root``:
    images/<name>/rootfs     the image, built once (busybox: Debian's busybox-static + applet links)
    images/<name>/spares/    (``MPANEL_POD_ROOTFS=copy`` only) whole copies of the image made ahead of
                             need (``POD_SPARES_ENV``): a new pod's rootfs is one of them renamed into
                             its bundle, so no file is copied while the API caller waits
    bundles/<id>/rootfs      the pod's root: an overlay of the image (``agent.rootfs``) whose writes
                             go to bundles/<id>/upper, or (copy mode, or no overlayfs) its own copy
    bundles/<id>/config.json ``runc spec``, adjusted (terminal off, args, cgroup limits)
    runc/                    runc's state (``runc --root``)

Every operation is idempotent: it reads the container's actual state and converges.

``NodeRuntime`` is also the node every operation runs on (``agent.registry.Node``): its root and its
websites (``.web``). The pod operations and the heartbeat are registered here, by name.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import rootfs
from .errors import AgentError
from .metrics import check_services
from .php import installed_versions
from .registry import OPERATIONS
from .web import WebRuntime

CONTAINER_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
CPU_PERIOD = 100_000
# Only for crash-safety tests: sleep this long after ``runc run`` succeeded, before answering.
PAUSE_AFTER_CREATE_ENV = "MPANEL_AGENT_DEBUG_PAUSE_AFTER_CREATE"
# How many ready copies of each image a node keeps (0: copy the image while the pod is created).
POD_SPARES_ENV = "MPANEL_POD_SPARES"
DEFAULT_POD_SPARES = 2
# A spare still being copied this long after it began was left by a process that died: removed.
STALE_SPARE_SECONDS = 3600


@dataclass(frozen=True)
class PodSpec:
    id: str
    image: str = "busybox"
    vcpu: float = 1.0
    memory_mb: int = 256
    disk_gb: int = 1
    pids: int = 128
    # ``sleep … & wait``: a shell runs a trap only once its foreground child returns, so a TERM sent
    # to ``sh; sleep 3600`` would wait out the grace period and need a KILL; ``wait`` is interrupted.
    args: list[str] = field(
        default_factory=lambda: ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"]
    )

    @classmethod
    def from_dict(cls, data: dict) -> PodSpec:
        try:
            spec = cls(
                id=str(data["id"]),
                image=str(data.get("image", "busybox")),
                vcpu=float(data.get("vcpu", 1)),
                memory_mb=int(data.get("memory_mb", 256)),
                disk_gb=int(data.get("disk_gb", 1)),
                pids=int(data.get("pids", 128)),
                **({"args": [str(a) for a in data["args"]]} if data.get("args") else {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AgentError(f"bad pod spec: {exc}", permanent=True) from exc
        spec.validate()
        return spec

    def validate(self) -> None:
        if not CONTAINER_ID_RE.match(self.id):
            raise AgentError(f"bad container id {self.id!r}", permanent=True)
        if self.memory_mb < 4 or self.vcpu <= 0 or self.pids < 1:
            raise AgentError("memory_mb >= 4, vcpu > 0 and pids >= 1 are required", permanent=True)

    def to_dict(self) -> dict:
        return asdict(self)


# --- images --------------------------------------------------------------------------------------


class BusyboxImage:
    """A rootfs with Debian's static busybox and a symlink per applet."""

    name = "busybox"
    source = Path("/bin/busybox")

    def available(self) -> bool:
        return self.source.exists()

    def build(self, target: Path) -> None:
        if not self.available():
            raise AgentError("busybox-static is not installed on this node (/bin/busybox)", permanent=True)
        bin_dir = target / "bin"
        bin_dir.mkdir(parents=True)
        shutil.copy2(self.source, bin_dir / "busybox")
        applets = subprocess.run([str(self.source), "--list"], capture_output=True, text=True, check=True).stdout
        for applet in applets.split():
            if applet != "busybox" and "/" not in applet:
                (bin_dir / applet).symlink_to("busybox")
        for d in ("proc", "sys", "dev", "tmp", "etc", "root", "run"):
            (target / d).mkdir(exist_ok=True)
        (target / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (target / "etc" / "group").write_text("root:x:0:\n")
        (target / "etc" / "hostname").write_text("cloudpod\n")


class DebootstrapImage:
    """A minimal Debian made by ``debootstrap`` (needs the ``debootstrap`` package and a mirror)."""

    def __init__(self, name: str = "debian-12", suite: str = "bookworm", mirror: str = "http://deb.debian.org/debian"):
        self.name, self.suite, self.mirror = name, suite, mirror

    def available(self) -> bool:
        return shutil.which("debootstrap") is not None

    def build(self, target: Path) -> None:
        if not self.available():
            raise AgentError("debootstrap is not installed on this node", permanent=True)
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", self.suite, str(target), self.mirror], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise AgentError(f"debootstrap failed: {result.stderr[-2000:]}")


IMAGES = {"busybox": BusyboxImage(), "debian-12": DebootstrapImage()}


# --- the runtime --------------------------------------------------------------------------------


class NodeRuntime:
    def __init__(self, root: str | os.PathLike, runc: str = "runc"):
        self.root = Path(root).resolve()
        self.runc_bin = runc
        self.state_dir = self.root / "runc"
        self.bundles = self.root / "bundles"
        self.images_dir = self.root / "images"
        self._lock = threading.Lock()  # image builds
        self._refilling: set[str] = set()  # images whose spares a thread of this process is copying
        self._template: dict | None = None  # ``runc spec``'s default config, parsed once
        # Why this node's kernel refused an overlay (then it copies; reported in the heartbeat).
        self._overlay_refused: str | None = None
        self._web: WebRuntime | None = None

    @property
    def web(self) -> WebRuntime:
        """Websites on nginx (``agent.web``), under ``<root>/web``."""
        if self._web is None:
            self._web = WebRuntime(self.root / "web")
        return self._web

    # --- runc -------------------------------------------------------------------------------
    def _runc(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [self.runc_bin, "--root", str(self.state_dir), *args]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise AgentError("runc is not installed on this node", permanent=True) from exc
        if check and result.returncode != 0:
            raise AgentError(f"runc {args[0]} failed: {(result.stderr or result.stdout).strip()[-1000:]}")
        return result

    def _state(self, container_id: str) -> dict | None:
        """The container's state (``id``, ``status``, ``pid``), or None when it does not exist.

        Read from runc's own state folder (``<root>/<id>/state.json``) the way ``runc state``
        decides it, without starting runc: no folder, no container; an init process that is not
        alive (pid and start time, so a reused pid does not count) is ``stopped``; a frozen cgroup is
        ``paused``; the exec fifo still there (created, not started) is ``created``; else ``running``.
        Anything this does not recognise (another state layout, a cgroup it cannot read) asks runc."""
        folder = self.state_dir / container_id
        if not folder.exists():
            return None
        fast = _read_state(folder, container_id)
        if fast is not None:
            return fast
        result = self._runc("state", container_id, check=False)
        if result.returncode != 0:
            if "does not exist" in result.stderr:
                return None
            raise AgentError(f"runc state failed: {result.stderr.strip()[-1000:]}")
        return json.loads(result.stdout)

    # --- images and bundles -----------------------------------------------------------------
    def image_rootfs(self, name: str) -> Path:
        image = IMAGES.get(name)
        if image is None:
            raise AgentError(f"unknown image {name!r}", permanent=True)
        final = self.images_dir / name / "rootfs"
        if final.exists():
            return final
        with self._lock:
            if final.exists():
                return final
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
            try:
                image.build(tmp / "rootfs")
                os.rename(tmp / "rootfs", final)  # atomic: a half-built image is never used
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    # --- spare rootfs copies ------------------------------------------------------------------
    @staticmethod
    def spares_wanted() -> int:
        try:
            return max(0, int(os.environ.get(POD_SPARES_ENV, DEFAULT_POD_SPARES)))
        except ValueError:
            return DEFAULT_POD_SPARES

    def spares_dir(self, name: str) -> Path:
        return self.images_dir / name / "spares"

    def _take_spare(self, name: str, target: Path) -> bool:
        """Move a ready copy of image ``name`` to ``target`` (same filesystem: one rename). A copy is
        whole or not there (it is renamed into ``spares/`` once complete), and a rename succeeds for
        one taker only, so two processes never share one. Each pod still gets its own copy: the
        spare was copied from the image exactly as ``copytree`` would while the pod is created."""
        folder = self.spares_dir(name)
        try:
            names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
        except FileNotFoundError:
            names = []
        for spare in names:
            try:
                os.rename(folder / spare, target)
                return True
            except FileNotFoundError:  # another process took it first
                continue
        return False

    def refill_spares(self, name: str) -> int:
        """Copy image ``name`` until ``POD_SPARES_ENV`` copies are ready; returns how many were made.
        The image must exist (a node root removed meanwhile stops the refill)."""
        image = self.images_dir / name / "rootfs"
        folder = self.spares_dir(name)
        made = 0
        wanted = self.spares_wanted()
        if not wanted or not image.exists():
            return 0
        try:
            folder.mkdir(exist_ok=True)
            now = time.time()
            for entry in os.scandir(folder):
                if (
                    entry.name.startswith(".")
                    and now - entry.stat(follow_symlinks=False).st_mtime > STALE_SPARE_SECONDS
                ):
                    shutil.rmtree(entry.path, ignore_errors=True)
            while len(os.listdir(folder)) < wanted:  # copies under way in other processes count too
                tmp = Path(tempfile.mkdtemp(prefix=".copy-", dir=folder))
                try:
                    rootfs.copy_tree(image, tmp / "rootfs")
                    os.rename(tmp / "rootfs", folder / uuid.uuid4().hex)
                    made += 1
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        except OSError:  # the node root went away (a test's, a wiped node): nothing to keep ready
            pass
        return made

    def refill_spares_later(self, name: str) -> None:
        """``refill_spares`` in a daemon thread, at most one per image in this process."""
        if not self.spares_wanted():
            return
        with self._lock:
            if name in self._refilling:
                return
            self._refilling.add(name)

        def run() -> None:
            try:
                self.refill_spares(name)
            finally:
                with self._lock:
                    self._refilling.discard(name)

        threading.Thread(target=run, name=f"pod-spares-{name}", daemon=True).start()

    def bundle_dir(self, container_id: str) -> Path:
        return self.bundles / container_id

    def _spec_template(self) -> dict:
        """``runc spec``'s default config, made once per node root (it is the same every time) and
        parsed once per process (``_config`` copies what it changes, never the template itself)."""
        if self._template is not None:
            return self._template
        self._template = self._read_spec_template()
        return self._template

    def _read_spec_template(self) -> dict:
        path = self.root / "spec-template.json"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".spec-", dir=self.root))
            try:
                self._runc("spec", "--bundle", str(tmp))
                os.replace(tmp / "config.json", path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return json.loads(path.read_text())

    def _config(self, spec: PodSpec, bundle: Path) -> dict:
        """The bundle's config: the template with the pod's own process, hostname, writable root and
        limits. Only the objects it changes are copied (the rest is shared with the template and only
        serialised), so the template read once stays as ``runc spec`` wrote it."""
        template = self._spec_template()
        config = dict(template)
        config["process"] = {
            **template["process"],
            "terminal": False,
            "args": list(spec.args),
            "env": ["PATH=/bin", "HOME=/root", "TERM=dumb"],
        }
        config["hostname"] = spec.id[:63]
        config["root"] = {**template["root"], "readonly": False}
        linux = config["linux"] = dict(template["linux"])
        linux["resources"] = {**linux.get("resources", {}), **self._resources(spec)}
        return config

    @staticmethod
    def _resources(spec: PodSpec) -> dict:
        return {
            "memory": {"limit": spec.memory_mb * 1024 * 1024},
            "cpu": {"quota": int(spec.vcpu * CPU_PERIOD), "period": CPU_PERIOD},
            "pids": {"limit": spec.pids},
        }

    def _write_bundle(self, spec: PodSpec) -> Path:
        bundle = self.bundle_dir(spec.id)
        if (bundle / "config.json").exists() and (bundle / "rootfs").exists():
            # Restarting a stopped container: its rootfs stays, its limits follow the current spec.
            config = json.loads((bundle / "config.json").read_text())
            config["linux"].setdefault("resources", {}).update(self._resources(spec))
            _write_atomic(bundle / "config.json", json.dumps(config))
            try:
                rootfs.ensure(bundle, self.images_dir)  # an overlay unmounted by a node restart
            except OSError as exc:
                raise AgentError(f"the pod's rootfs cannot be mounted: {exc}") from exc
            return bundle
        rootfs.remove(bundle)
        self.bundles.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.id}-", dir=self.bundles))
        try:
            image = self.image_rootfs(spec.image)
            # spec.json first: it names the image a remount after a node restart needs (rootfs.ensure).
            (tmp / "spec.json").write_text(json.dumps(spec.to_dict()))
            if not self._overlay(tmp, image) and not self._take_spare(spec.image, tmp / "rootfs"):
                rootfs.copy_tree(image, tmp / "rootfs")
            config = self._config(spec, tmp)
            # Compact: json indents with its pure-Python encoder, five times as slow as the compact C
            # one on runc's spec (0.2 ms of a create); runc reads either (``jq .`` shows it indented).
            (tmp / "config.json").write_text(json.dumps(config))
            os.rename(tmp, bundle)  # the overlay mounted below it moves with it
        except BaseException:
            rootfs.remove(tmp)
            raise
        return bundle

    def _overlay(self, bundle: Path, image: Path) -> bool:
        """Mount ``bundle/rootfs`` as an overlay of ``image``; False when this node copies instead
        (``MPANEL_POD_ROOTFS=copy``, or the kernel refused an overlay once: not asked again)."""
        if not rootfs.wanted() or self._overlay_refused is not None:
            return False
        try:
            rootfs.prepare(bundle, image)
        except OSError as exc:
            self._overlay_refused = str(exc)
            return False
        return True

    # --- operations -------------------------------------------------------------------------
    def pod_create(self, spec: PodSpec) -> dict:
        """Ensure the container exists and runs. A running or paused one is left as it is."""
        spec.validate()
        state = self._state(spec.id)
        if state is not None and state["status"] in ("running", "paused"):
            return {"created": False, **self._short(state)}
        if state is not None:  # created or stopped: start again from the bundle
            self._runc("delete", "-f", spec.id)
        bundle = self._write_bundle(spec)
        log = bundle / "container.log"
        with open(log, "ab") as out:
            returncode = _run_waiting(
                [self.runc_bin, "--root", str(self.state_dir), "run", "-d", "--bundle", str(bundle), spec.id],
                out,
                timeout=60,
            )
        if returncode != 0:
            raise AgentError(f"runc run failed: {log.read_text(errors='replace')[-1000:]}")
        if not rootfs.is_overlay(bundle):
            self.refill_spares_later(spec.image)  # the copy the next pod takes, made after this one runs
        pause = float(os.environ.get(PAUSE_AFTER_CREATE_ENV) or 0)
        if pause:
            time.sleep(pause)
        return {"created": True, **self._short(self._state(spec.id))}

    def pod_state(self, container_id: str) -> dict:
        state = self._state(container_id)
        if state is None:
            return {"id": container_id, "state": "absent", "pid": None}
        return self._short(state)

    @staticmethod
    def _short(state: dict | None) -> dict:
        if state is None:
            return {"state": "absent", "pid": None}
        return {"id": state["id"], "state": state["status"], "pid": state.get("pid") or None}

    def pod_stats(self, container_id: str) -> dict:
        """State and usage: memory limit and usage, CPU seconds, pids. Read from the container's
        cgroup files, the ones ``runc events --stats`` reads (``_cgroup_stats``), without starting
        runc; a layout those reads do not recognise asks ``runc events --stats`` itself."""
        short = self.pod_state(container_id)
        out = {**short, "memory_limit_bytes": None, "memory_usage_bytes": None, "cpu_seconds": None, "pids": None}
        if short["state"] not in ("running", "paused", "created"):
            return out
        usage = _cgroup_stats(self.state_dir / container_id)
        if usage is not None:
            return {**out, **usage}
        return self._runc_stats(container_id, out)

    def _runc_stats(self, container_id: str, out: dict) -> dict:
        """``pod_stats``' usage from ``runc events --stats`` (the fallback, and the reference the
        cgroup reads are tested against)."""
        out = dict(out)
        result = self._runc("events", "--stats", container_id, check=False, timeout=20)
        if result.returncode != 0:
            return out
        data = json.loads(result.stdout).get("data", {})
        memory = data.get("memory", {}).get("usage", {})
        out["memory_limit_bytes"] = memory.get("limit")
        out["memory_usage_bytes"] = memory.get("usage")
        total = data.get("cpu", {}).get("usage", {}).get("total")
        out["cpu_seconds"] = round(total / 1e9, 3) if total is not None else None
        out["pids"] = data.get("pids", {}).get("current")
        return out

    def pod_pause(self, container_id: str) -> dict:
        state = self._require(container_id)
        if state["status"] == "running":
            self._runc("pause", container_id)
        elif state["status"] != "paused":
            raise AgentError(f"cannot pause a {state['status']} container")
        return self.pod_state(container_id)

    def pod_resume(self, container_id: str) -> dict:
        state = self._require(container_id)
        if state["status"] == "paused":
            self._runc("resume", container_id)
        elif state["status"] != "running":
            raise AgentError(f"cannot resume a {state['status']} container")
        return self.pod_state(container_id)

    def pod_restart(self, spec: PodSpec, grace: float = 5.0) -> dict:
        """Stop the container's processes (TERM, then KILL after ``grace`` seconds) and run it again
        from its bundle: the rootfs stays (what the pod wrote is kept), the limits follow ``spec``.
        A paused (suspended) container is refused: resume it first."""
        spec.validate()
        state = self._require(spec.id)
        if state["status"] == "paused":
            raise AgentError("cannot restart a paused container: resume it first")
        if state["status"] == "running":
            self._runc("kill", spec.id, "TERM", check=False)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                now = self._state(spec.id)
                if now is None or now["status"] == "stopped":
                    break
                time.sleep(0.1)
            else:
                # Not ``kill KILL``: that returns once the signal is sent, and a state read right after
                # can still see the process alive, so ``pod_create`` would leave it to die. ``delete
                # -f`` kills and waits for the exit before it removes the container (the bundle stays).
                self._runc("delete", "-f", spec.id, check=False)
        return self.pod_create(spec)  # a stopped container runs again from its bundle

    def pod_update(self, spec: PodSpec) -> dict:
        """New limits for a live container (``runc update``), kept in its bundle for a restart."""
        spec.validate()
        self._require(spec.id)
        r = self._resources(spec)
        self._runc(
            "update",
            "--memory",
            str(r["memory"]["limit"]),
            "--cpu-quota",
            str(r["cpu"]["quota"]),
            "--cpu-period",
            str(r["cpu"]["period"]),
            "--pids-limit",
            str(r["pids"]["limit"]),
            spec.id,
        )
        bundle = self.bundle_dir(spec.id)
        config_path = bundle / "config.json"
        if config_path.exists():
            config = json.loads(config_path.read_text())
            config["linux"].setdefault("resources", {}).update(r)
            _write_atomic(config_path, json.dumps(config))
        return self.pod_state(spec.id)

    def pod_delete(self, container_id: str) -> dict:
        """Kill, delete and remove the bundle (rootfs included). Nothing left is fine."""
        if not CONTAINER_ID_RE.match(container_id):
            raise AgentError(f"bad container id {container_id!r}", permanent=True)
        state = self._state(container_id)
        if state is not None:
            if state["status"] == "paused":
                self._runc("resume", container_id, check=False)
            if state["status"] in ("running", "paused", "created"):
                self._runc("kill", container_id, "KILL", check=False)
            self._runc("delete", "-f", container_id)
        rootfs.remove(self.bundle_dir(container_id))
        return {"id": container_id, "state": "absent", "existed": state is not None}

    def pod_list(self) -> list[dict]:
        if not self.state_dir.exists():
            return []
        result = self._runc("list", "--format", "json")
        return [{"id": c["id"], "state": c["status"]} for c in (json.loads(result.stdout or "null") or [])]

    def heartbeat(self) -> dict:
        version = self._runc("--version", check=False).stdout.split("\n")[0].strip()
        meminfo = _meminfo()
        disk = shutil.disk_usage(self.root if self.root.exists() else self.root.parent)
        return {
            "time": time.time(),
            "runc": version,
            "images": sorted(name for name, image in IMAGES.items() if image.available()),
            "php_versions": installed_versions(),
            "memory_available_mb": meminfo.get("MemAvailable", 0) // 1024,
            "disk_free_gb": disk.free // 1024**3,
            "cpus": os.cpu_count(),
            "pods": self.pod_list(),
            "services": check_services(self.root, self.runc_bin),
            "pod_rootfs": self.rootfs_mode(),
        }

    def rootfs_mode(self) -> dict:
        """How new pods get their rootfs here, and why a node copies when overlays are wanted."""
        if not rootfs.wanted():
            return {"mode": "copy", "reason": f"{rootfs.ROOTFS_ENV}=copy"}
        if self._overlay_refused is not None:
            return {"mode": "copy", "reason": f"overlay refused: {self._overlay_refused}"}
        return {"mode": "overlay"}

    def _require(self, container_id: str) -> dict:
        state = self._state(container_id)
        if state is None:
            raise AgentError(f"container {container_id} does not exist")
        return state


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _run_waiting(cmd: list[str], out, *, timeout: float) -> int:
    """Run ``cmd`` (output to the file ``out``) and return its exit status as soon as it exits.

    ``subprocess.run(timeout=…)`` without pipes waits by polling with sleeps of up to 50 ms, a delay
    that every ``runc run`` paid after it had finished; a pidfd is readable the moment the process
    exits. A command still running after ``timeout`` seconds is killed (``subprocess.TimeoutExpired``)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (an old kernel): the polling wait
        pidfd = None
    try:
        if pidfd is not None:
            try:
                ready, _, _ = select.select([pidfd], [], [], timeout)
            finally:
                os.close(pidfd)
            if not ready:
                raise subprocess.TimeoutExpired(cmd, timeout)
            return proc.wait()
        return proc.wait(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def _read_state(folder: Path, container_id: str) -> dict | None:
    """``runc state``'s answer from its state folder (see ``NodeRuntime._state``); None: ask runc."""
    try:
        data = json.loads((folder / "state.json").read_text())
        pid, start = int(data["init_process_pid"]), int(data["init_process_start"])
        cgroups = data.get("cgroup_paths") or {}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    out = {"id": container_id, "pid": pid, "created": data.get("created")}
    if pid <= 0 or _process_start(pid) != start:
        return {**out, "status": "stopped", "pid": 0}
    frozen = _frozen(cgroups)
    if frozen is None:
        return None
    if frozen:
        return {**out, "status": "paused"}
    if (folder / "exec.fifo").exists():
        return {**out, "status": "created"}
    return {**out, "status": "running"}


def _cgroup_stats(folder: Path) -> dict | None:
    """The usage ``runc events --stats`` answers, read from the cgroup files it reads itself (the
    paths runc recorded in its state file): cgroup v1 (``memory.usage_in_bytes`` and
    ``memory.limit_in_bytes``, ``cpuacct.usage`` in ns, ``pids.current``) when runc manages a v1
    memory controller, else the unified v2 group (``memory.current``, ``memory.max`` — ``max`` is
    runc's 2**64-1 —, ``usage_usec`` of ``cpu.stat``, ``pids.current``). None when a file is
    missing or unreadable: the caller asks runc."""
    try:
        cgroups = json.loads((folder / "state.json").read_text()).get("cgroup_paths") or {}
        if cgroups.get("memory"):
            memory, cpuacct, pids = cgroups["memory"], cgroups.get("cpuacct"), cgroups.get("pids")
            if not (cpuacct and pids):
                return None
            usage = int(Path(memory, "memory.usage_in_bytes").read_text())
            limit = int(Path(memory, "memory.limit_in_bytes").read_text())
            cpu_ns = int(Path(cpuacct, "cpuacct.usage").read_text())
            current = int(Path(pids, "pids.current").read_text())
        elif cgroups.get("") and len(cgroups) == 1:
            group = cgroups[""]
            usage = int(Path(group, "memory.current").read_text())
            raw_limit = Path(group, "memory.max").read_text().strip()
            limit = 2**64 - 1 if raw_limit == "max" else int(raw_limit)
            stat = dict(line.split() for line in Path(group, "cpu.stat").read_text().splitlines() if line.strip())
            cpu_ns = int(stat["usage_usec"]) * 1000
            current = int(Path(group, "pids.current").read_text())
        else:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return {
        "memory_limit_bytes": limit,
        "memory_usage_bytes": usage,
        "cpu_seconds": round(cpu_ns / 1e9, 3),
        "pids": current,
    }


def _frozen(cgroups: dict) -> bool | None:
    """Is the container's cgroup frozen (cgroup v1 ``freezer.state``, v2 ``cgroup.freeze``)?
    None when neither can be read."""
    try:
        if cgroups.get("freezer"):
            state = Path(cgroups["freezer"], "freezer.state").read_text().strip()
            return {"FROZEN": True, "THAWED": False}.get(state)  # FREEZING: runc decides
        if cgroups.get(""):
            return Path(cgroups[""], "cgroup.freeze").read_text().strip() == "1"
    except OSError:
        return None
    return None


def _process_start(pid: int) -> int | None:
    """A live process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), as
    runc records it; None when there is no such process or it is a zombie or dead (runc's test too:
    a container whose process exited is stopped even before its parent reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        fields = stat[stat.rindex(")") + 2 :].split()  # after "(comm)": field 3 (the state) onwards
        if fields[0] in ("Z", "X", "x"):
            return None
        return int(fields[19])
    except (ValueError, IndexError):
        return None


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


# --- the pod operations (agent.dispatch calls them by name) -------------------------------------


def _container_id(args: dict) -> str:
    container_id = args.get("id")
    if not isinstance(container_id, str) or not CONTAINER_ID_RE.match(container_id):
        raise AgentError("a valid container id is required", permanent=True)
    return container_id


@OPERATIONS.register("pod_create")
def pod_create(runtime: NodeRuntime, args: dict) -> dict:
    return runtime.pod_create(PodSpec.from_dict(args.get("spec") or {}))


@OPERATIONS.register("pod_state")
def pod_state(runtime: NodeRuntime, args: dict) -> dict:
    return runtime.pod_state(_container_id(args))


@OPERATIONS.register("pod_stats")
def pod_stats(runtime: NodeRuntime, args: dict) -> dict:
    return runtime.pod_stats(_container_id(args))


@OPERATIONS.register("pod_pause")
def pod_pause(runtime: NodeRuntime, args: dict) -> dict:
    return runtime.pod_pause(_container_id(args))


@OPERATIONS.register("pod_resume")
def pod_resume(runtime: NodeRuntime, args: dict) -> dict:
    return runtime.pod_resume(_container_id(args))


@OPERATIONS.register("pod_restart")
def pod_restart(runtime: NodeRuntime, args: dict) -> dict:
    return runtime.pod_restart(PodSpec.from_dict(args.get("spec") or {}))


@OPERATIONS.register("pod_update")
def pod_update(runtime: NodeRuntime, args: dict) -> dict:
    return runtime.pod_update(PodSpec.from_dict(args.get("spec") or {}))


@OPERATIONS.register("pod_delete")
def pod_delete(runtime: NodeRuntime, args: dict) -> dict:
    return runtime.pod_delete(_container_id(args))


@OPERATIONS.register("pod_list")
def pod_list(runtime: NodeRuntime, args: dict) -> list[dict]:
    return runtime.pod_list()


@OPERATIONS.register("heartbeat")
def heartbeat(runtime: NodeRuntime, args: dict) -> dict:
    return runtime.heartbeat()
