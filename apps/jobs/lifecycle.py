"""The lifecycle of a provisioned resource, declared once per model (docs/architecture.md).

A provisioned resource (a pod, a website, a zone, …) is a row with a ``status`` that says what the
tenant wants, and jobs that make a node match it. Every change follows the same steps, which this
module owns so that no app writes them again:

1. lock the row (``SELECT … FOR UPDATE`` of the row alone);
2. check the move against the declared states (a refused move is a 409 with the declared message);
3. set the new status and fields, save, and audit the change with the model's ``audit_fields``;
4. store the job (it is dispatched when the transaction commits: ``job_enqueue``).

A delete move (``delete_moves``) first runs the ``BEFORE_DELETE`` steps (e.g. a final backup). A
step may answer a job instead of acting at once: the row is then marked deleted-to-be at once, and
its delete job is stored only when that job has succeeded (``follow_up``); after a failed one the
row is ``error`` with the reason and nothing is removed, unless the delete was forced.

The job handler then converges the node (``run_job``): the row is locked for the whole
convergence so two jobs of one resource never act on the node at once; ``converged`` records the
state reached, and ``fail`` marks the row ``error`` when retrying cannot help.

    pods = Lifecycle(
        model=CloudPod, kind="cloudpod", payload_key="pod",
        moves={"suspend": Move(to=PodStatus.SUSPENDED, sources={PodStatus.RUNNING},
                               refusal="Only a running pod can be suspended; this one is {status}.")},
        job_targets={"cloudpod.suspend": PodStatus.SUSPENDED},
    )

    @transaction.atomic
    def pod_suspend(*, pod, actor=None):
        return pods.move(pod, "suspend", actor=actor)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

from django.db import models, transaction
from django.utils import timezone

from apps.audit import services as audit
from apps.common import context
from apps.common.exceptions import Conflict
from apps.common.prepared import as_uuid
from apps.common.registry import Registry
from apps.tenancy.scoping import ScopedPreparedQuery

from .errors import tenant_message
from .models import Job
from .registry import PermanentError
from .services import job_enqueue

M = TypeVar("M", bound=models.Model)

ERROR = "error"

# Steps run, in registration order, before a resource is deleted: ``step(obj, actor=…, force=…,
# then=…)`` with the resource's row locked. A step that raises stops the delete (the transaction rolls
# back); ``force`` is True when an ADMIN+ asked to delete anyway (``?force=true``), and a step may then
# let its own failure pass. ``then`` is ``None`` when the delete happens now (a service that deletes a
# row without a Lifecycle calls ``before_delete``): the step acts at once. From a Lifecycle's delete
# move it is a dict the step may carry in a job's payload, answering that job: the delete job is then
# stored only by ``follow_up(then, ok=…)`` once that job has ended (the final backup runs as a job,
# not inside the delete request). The backups module registers the final snapshot here.
BEFORE_DELETE: Registry[Callable[..., Job | None]] = Registry("before-delete step")
_forced: ContextVar[bool] = ContextVar("mpanel_forced_delete", default=False)
LIFECYCLES: dict[str, Lifecycle] = {}  # by kind: a deferred delete names its row's lifecycle in ``then``


@contextmanager
def forced(force: bool = True) -> Iterator[None]:
    """Deletes inside run their before-delete steps with ``force`` (an ADMIN+'s explicit choice)."""
    token = _forced.set(force)
    try:
        yield
    finally:
        _forced.reset(token)


def _force() -> bool:
    return _forced.get() or context.current().force_delete


def before_delete(obj: models.Model, *, actor: Any = None) -> None:
    """The steps, now (a delete that happens in this transaction)."""
    for step in BEFORE_DELETE:
        step(obj, actor=actor, force=_force(), then=None)


def follow_up(then: Mapping[str, Any], *, ok: bool, error: str = "") -> str:
    """A job a delete waited for has ended (``then``: what ``Lifecycle.move`` gave the step). It
    succeeded, or the delete was forced: the row's delete job is stored now. It failed: the row is
    ``error`` with the reason in its error field, audited, its data left on the node (a row that is
    no longer being deleted, or is gone, is left alone). Answers what was done."""
    lifecycle = LIFECYCLES[then["lifecycle"]]
    with transaction.atomic():
        manager = getattr(lifecycle.model, "all_tenants", lifecycle.model._default_manager)
        row = manager.select_for_update(of=("self",)).filter(pk=then["pk"]).first()
        if row is None or getattr(row, lifecycle.status_field) != then["to"]:
            return "left"
        if ok or then.get("force"):
            lifecycle.enqueue(row, then["job"], actor=audit.SYSTEM)
            return "deleting"
        # ``error``, not the state it came from: the delete service may have let go of things in the
        # request (a website's hostnames are free at once). Nothing on the node was removed; deleting
        # it again tries the final backup again (``?force=true``: deletes whatever it gives).
        lifecycle.transition(row, ERROR, f"{lifecycle.kind}.delete_stopped", actor=audit.SYSTEM,
                             **{lifecycle.error_field: error[:2000]})  # fmt: skip
        return "stopped"


@dataclass(frozen=True)
class Move:
    """A state change the tenant may ask for.

    ``sources``: the states it may start from; empty means any state but those in ``not_from``.
    ``refusal``: the 409's message when the row is elsewhere (``{status}`` is its state).
    ``job``: the job type enqueued after the change (default ``"<kind>.<name>"``; ``""``: none).
    ``action``: the audit action (default ``"<kind>.<name>"``).
    """

    to: str
    refusal: str
    sources: Collection[str] = field(default_factory=frozenset)
    not_from: Collection[str] = field(default_factory=frozenset)
    job: str | None = None
    action: str | None = None
    code: str = "conflict"

    def allows(self, status: str) -> bool:
        if self.sources:
            return status in self.sources
        return status not in self.not_from


class Lifecycle(Generic[M]):
    """The declared lifecycle of one model (see the module's docstring)."""

    def __init__(
        self,
        *,
        model: type[M],
        kind: str,
        payload_key: str,
        moves: Mapping[str, Move] | None = None,
        job_targets: Mapping[str, str] | None = None,
        related: tuple[str, ...] = ("node", "tenant"),
        noun: str | None = None,
        status_field: str = "status",
        error_field: str = "last_error",
        gone: Collection[str] = ("deleted",),
        delete_moves: Collection[str] = ("delete", "drop"),
    ) -> None:
        self.model = model
        self.kind = kind
        self.payload_key = payload_key
        self.moves = dict(moves or {})
        self.job_targets = dict(job_targets or {})
        self.related = related
        self.noun = noun or model._meta.verbose_name
        self.status_field = status_field
        self.error_field = error_field
        self.gone = frozenset(gone)
        self.delete_moves = frozenset(delete_moves)
        LIFECYCLES.setdefault(kind, self)

    # --- the tenant's side: changes asked through the API or the admin ----------------------------

    def locked(self, obj: M | Any) -> M:
        """The row, locked for this transaction (its related rows are read, not locked)."""
        pk = obj.pk if isinstance(obj, models.Model) else obj
        key = as_uuid(pk) if isinstance(self.model._meta.pk, models.UUIDField) else None
        if key is None:  # another kind of key, or not a UUID: the ORM (which refuses the latter its own way)
            return self.model.objects.select_for_update(of=("self",)).select_related(*self.related).get(pk=pk)
        # The same read compiled once per process (every job and move of every resource locks its row).
        rows = self._locking.rows(pk=key)
        if not rows:
            raise self.model.DoesNotExist(f"{self.model._meta.object_name} matching query does not exist.")
        return rows[0]

    @cached_property
    def _locking(self) -> ScopedPreparedQuery:
        def build(pk: uuid.UUID) -> models.QuerySet:
            return self.model.all_tenants.select_for_update(of=("self",)).select_related(*self.related).filter(pk=pk)

        return ScopedPreparedQuery(self.model, build, for_write=True, pk=uuid.UUID)

    def check(self, obj: M, name: str) -> Move:
        """The move ``name``, or a 409 when ``obj``'s state does not allow it."""
        move = self.moves[name]
        status = getattr(obj, self.status_field)
        if not move.allows(status):
            raise Conflict(move.refusal.format(status=status), code=move.code)
        return move

    def move(self, obj: M, name: str, *, actor: Any = None, lock: bool = True, **changes: Any) -> M:
        """Lock, check, change, audit and enqueue: one declared move, in one transaction."""
        with transaction.atomic():
            row = self.locked(obj) if lock else obj
            move = self.check(row, name)
            job_type = f"{self.kind}.{name}" if move.job is None else move.job
            waits = []
            if name in self.delete_moves:
                # A step may answer a job (a final backup): the delete job follows it (``follow_up``;
                # one such step per delete: the backups module's).
                then = {"lifecycle": self.kind, "pk": str(row.pk), "job": job_type, "to": move.to,
                        "from": getattr(row, self.status_field), "force": _force()}  # fmt: skip
                waits = [job for step in BEFORE_DELETE if (job := step(row, actor=actor, force=then["force"],
                                                                        then=then)) is not None]  # fmt: skip
            self.transition(row, move.to, move.action or f"{self.kind}.{name}", actor=actor, **changes)
            if job_type and not waits:
                self.enqueue(row, job_type, actor=actor)
            return row

    def transition(self, obj: M, to: str, action: str, *, actor: Any = None, **changes: Any) -> M:
        """Set the status and fields of a locked row and audit it (for moves a service checks itself)."""
        with audit.change(obj, action, actor=actor):
            setattr(obj, self.status_field, to)
            for name, value in changes.items():
                setattr(obj, name, value)
            obj.save()
        return obj

    def enqueue(self, obj: M, job_type: str, *, actor: Any = None, key: str | None = None, **payload: Any) -> Job:
        return job_enqueue(
            tenant=obj.tenant,
            type=job_type,
            payload={self.payload_key: str(obj.pk), **payload},
            key=key,
            actor=actor,
            obj=obj,
        )

    # --- the node's side: job handlers ------------------------------------------------------------

    def wanted(self, obj: M, job_type: str) -> str | None:
        """The state a job converges the row to: its status, or for an ``error`` row the state its
        job was for (``None``: nothing to do, e.g. a failed row with no job target or a gone row)."""
        status = getattr(obj, self.status_field)
        if status == ERROR:
            status = self.job_targets.get(job_type, ERROR)
            if status == ERROR:
                return None
        if status in self.gone:
            return None
        return status

    def converged(self, obj: M, status: str, **changes: Any) -> None:
        """The node matches ``status``: store it (and ``changes``), clear the error, and audit a
        change of status as the system's act."""
        before = getattr(obj, self.status_field)
        if before == status and not changes and not getattr(obj, self.error_field):
            return
        setattr(obj, self.status_field, status)
        setattr(obj, self.error_field, "")
        for name, value in changes.items():
            setattr(obj, name, value)
        # Only what changed (the row is locked: nothing else can have moved), not every column.
        written = [self.status_field, self.error_field, *changes]
        if any(f.name == "updated_at" for f in obj._meta.concrete_fields):
            written.append("updated_at")
        obj.save(update_fields=written)
        if before != status:
            audit.record(action=f"{self.kind}.{status}", obj=obj, actor=None, changes={"status": [before, status]})

    def fail(self, pk: Any, error: str, *, keep: Collection[str] = ()) -> None:
        """A job gave up: the row shows ``error`` with the reason (in its own transaction, so it
        stays whatever the job's transaction does). A row in a state of ``keep`` (e.g. being
        removed: asking again retries it) keeps its state and records only the reason."""
        with transaction.atomic():
            obj = self.model.all_tenants.select_for_update().filter(pk=pk).first()
            if obj is None or getattr(obj, self.status_field) in self.gone:
                return
            before = getattr(obj, self.status_field)
            if before in keep:
                self.note_error(pk, error)
                return
            setattr(obj, self.status_field, ERROR)
            setattr(obj, self.error_field, error[:2000])
            obj.save()
            audit.record(action=f"{self.kind}.error", obj=obj, actor=None, changes={"status": [before, ERROR]})

    def note_error(self, pk: Any, error: str) -> None:
        """Record why an attempt failed on the row, its state unchanged (not audited: nothing the
        tenant asked for changed)."""
        self.model.all_tenants.filter(pk=pk).update(**{self.error_field: error[:2000]})

    def run_job(
        self,
        job: Job,
        converge: Callable[[M, str], dict],
        *,
        progress: tuple[str, str] | None = None,
        on_missing: str = "fail",
        keep: Collection[str] = (),
        record_retry_errors: bool = False,
    ) -> dict:
        """A job handler's body: find the row of ``job``'s payload, lock it, and ``converge(row,
        job.type)``. ``progress=(from, to)`` shows visible progress first (``pending`` →
        ``provisioning``) without taking the lock.

        Errors that carry ``permanent`` (a node's answer, ``NodeError``) fail the row at once when
        retrying cannot help, or on the last attempt; any other error fails it on the last attempt
        with the tenant-safe message and is retried until then. A ``PermanentError`` that
        ``converge`` raises itself (the job does not apply to the row) fails the job, not the row.

        ``on_missing="skip"``: a job whose row is gone (removed since it was stored) succeeds with
        ``{"skipped": "gone"}`` instead of failing. ``keep``: states a failure does not change (the
        row records only ``last_error``; see ``fail``). ``record_retry_errors``: an attempt that will
        be retried records its error on the row too, so the tenant sees why it is still pending.
        """
        if on_missing not in ("fail", "skip"):
            raise ValueError(f"on_missing is 'fail' or 'skip', not {on_missing!r}")
        pk = job.payload.get(self.payload_key)
        if not pk:
            return self._missing(pk, on_missing)
        # A row that is gone (or not the job's tenant's: the managers are scoped) is found out by the lock
        # below: the progress update then changes nothing, and no look of its own is needed first.
        if progress is not None:
            self.model.objects.filter(pk=pk, **{self.status_field: progress[0]}).update(
                **{self.status_field: progress[1], "updated_at": timezone.now()}
            )
        try:
            with transaction.atomic():
                try:
                    row = self.locked(pk)
                except self.model.DoesNotExist:  # removed between the look and the lock
                    return self._missing(pk, on_missing)
                return converge(row, job.type)
        except PermanentError:
            raise
        except Exception as exc:
            last = job.attempts >= job.max_attempts
            permanent = getattr(exc, "permanent", None)
            if isinstance(permanent, bool):
                message = getattr(exc, "message", None) or str(exc)
                if permanent or last:
                    self.fail(pk, error=message, keep=keep)
                    raise PermanentError(message) from exc
                if record_retry_errors:
                    self.note_error(pk, message)
                raise
            if last:
                self.fail(pk, error=tenant_message(exc), keep=keep)
            elif record_retry_errors:
                self.note_error(pk, tenant_message(exc))
            raise

    def _missing(self, pk: Any, on_missing: str) -> dict:
        if on_missing == "skip":
            return {"skipped": "gone"}
        raise PermanentError(f"No {self.noun} {pk!r} in this tenant.")
