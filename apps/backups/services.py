"""Backup writes and their jobs' convergence (docs/modules/backups.md).

Every change is one transaction with its audit event and the job that makes the node act:
``backup.repository.init|check|delete``, ``backup.snapshot.run|forget``, ``backup.restore.run``,
``backup.drill.run``. A repository's password is decrypted only to build one node call
(``repo_spec``): it is in no payload, answer, audit record or log.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from decimal import ROUND_UP, Decimal
from typing import Any
from urllib.parse import urlsplit

from celery.schedules import crontab
from django import db
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from apps.audit import services as audit
from apps.billing.models import Subscription, SubscriptionStatus
from apps.billing.services.subscriptions import usage_record
from apps.cloudpods import services as pod_services
from apps.cloudpods.models import CloudPod, PodStatus
from apps.cloudpods.serializers import NAME_RE as POD_NAME_RE
from apps.common.exceptions import Conflict, InvalidInput
from apps.databases import services as database_services
from apps.databases.models import Database
from apps.dns import services as dns_services
from apps.dns.models import Zone
from apps.jobs.lifecycle import Lifecycle, Move, follow_up
from apps.jobs.models import Job
from apps.mail import services as mail_services
from apps.mail.models import Mailbox, MailDomain
from apps.nodes.drivers import NodeError, driver_for
from apps.nodes.models import Node, NodeStatus, with_role
from apps.security import mfa
from apps.security.events import record_event
from apps.security.models import EventType
from apps.tenancy.scoping import all_tenants
from apps.websites import services as website_services
from apps.websites.models import Website, WebsiteStatus

from . import crypto, validators
from .models import (
    Backend,
    BackupPolicy,
    BackupRepository,
    Drill,
    DrillStatus,
    Reason,
    RepoStatus,
    ResourceKind,
    Restore,
    RunStatus,
    Snapshot,
    SnapshotStatus,
    TaskStatus,
)
from .sources import customer_of, customer_resources, kind_of, parse_ref, reaches, source

log = logging.getLogger(__name__)

CHECK_SUBSETS = 12  # a scheduled check reads 1/12 of the data, the next round the next twelfth
EVENT_DRILL_FAILED = EventType.BACKUP_DRILL_FAILED
EVENT_CHECK_FAILED = EventType.BACKUP_CHECK_FAILED

repositories: Lifecycle[BackupRepository] = Lifecycle(
    model=BackupRepository,
    kind="backup.repository",
    payload_key="repository",
    moves={
        "delete": Move(
            to=RepoStatus.DELETING, not_from={RepoStatus.DELETING}, refusal="This repository is {status} already."
        )
    },
    job_targets={"backup.repository.init": RepoStatus.ACTIVE},
)
snapshots: Lifecycle[Snapshot] = Lifecycle(
    model=Snapshot, kind="backup.snapshot", payload_key="snapshot", related=("repository", "repository__node", "tenant")
)
restores: Lifecycle[Restore] = Lifecycle(
    model=Restore, kind="backup.restore", payload_key="restore", related=("snapshot", "snapshot__repository", "tenant")
)
drills: Lifecycle[Drill] = Lifecycle(
    model=Drill, kind="backup.drill", payload_key="drill", related=("policy", "tenant")
)


# --- repositories -------------------------------------------------------------------------------------


def repo_spec(repo: BackupRepository) -> dict:
    """What the node needs to open the repository. Built for one node call; never stored or logged:
    the password, an SFTP repository's private key and an S3 repository's secret key are decrypted
    here only."""
    spec = {"id": repo.restic_name, "backend": repo.backend, "password": crypto.decrypt(repo.password_encrypted)}
    if repo.backend == Backend.SFTP:
        spec.update(host=repo.sftp_host, port=repo.sftp_port, user=repo.sftp_user, path=repo.sftp_path,
                    host_key=repo.sftp_host_key, key=crypto.SFTP_KEYS.decrypt(repo.sftp_key_encrypted))  # fmt: skip
    elif repo.backend == Backend.S3:
        spec.update(endpoint=repo.s3_endpoint, bucket=repo.s3_bucket, region=repo.s3_region,
                    access_key_id=repo.s3_access_key_id,
                    secret_key=crypto.S3_SECRETS.decrypt(repo.s3_secret_encrypted))  # fmt: skip
    return spec


SFTP_FIELDS = ("sftp_host", "sftp_port", "sftp_user", "sftp_path", "sftp_host_key", "sftp_private_key")
S3_FIELDS = ("s3_endpoint", "s3_bucket", "s3_region", "s3_access_key_id", "s3_secret_key")


def _default_sftp_host(node: Node) -> str:
    if node.address:
        with suppress(ValueError):
            found = urlsplit(node.address).hostname
            if found:
                return found
    return node.hostname


def _backend_fields(backend: str, node: Node, data: dict, *, name: str) -> dict:
    """The model fields of one backend, each value checked (``validators``), secrets sealed; a value
    of another backend is a 400 (it would be silently ignored otherwise)."""
    if backend not in Backend.values:
        raise InvalidInput(f"The backend is one of {', '.join(Backend.values)}.", field="backend")
    own = {Backend.SFTP: SFTP_FIELDS, Backend.S3: S3_FIELDS}.get(backend, ())
    for key, value in data.items():
        if key not in own and value not in (None, "", 22):
            raise InvalidInput(f"{key} is not a setting of a {backend} repository.", field=key)
    if backend == Backend.SFTP:
        given_key = data.get("sftp_private_key")
        if given_key:
            private, public = validators.private_key(given_key)
        else:  # the panel makes the key; the operator puts its public half in authorized_keys
            private, public = validators.new_key_pair(f"mpanel-backup-{slugify(name)[:40] or 'repository'}")
        return {
            "sftp_host": validators.host(data.get("sftp_host") or _default_sftp_host(node), field="sftp_host"),
            "sftp_port": validators.port(data.get("sftp_port") or 22, field="sftp_port"),
            "sftp_user": validators.ssh_user(data.get("sftp_user")),
            "sftp_path": validators.remote_path(data.get("sftp_path") or "mpanel-backups"),
            "sftp_host_key": validators.host_key(data.get("sftp_host_key")),
            "sftp_public_key": public,
            "sftp_key_encrypted": crypto.SFTP_KEYS.encrypt(private),
        }
    if backend == Backend.S3:
        return {
            "s3_endpoint": validators.endpoint(data.get("s3_endpoint")),
            "s3_bucket": validators.bucket(data.get("s3_bucket")),
            "s3_region": validators.region(data.get("s3_region")),
            "s3_access_key_id": validators.access_key_id(data.get("s3_access_key_id")),
            "s3_secret_encrypted": crypto.S3_SECRETS.encrypt(validators.secret_key(data.get("s3_secret_key"))),
        }
    return {}


@transaction.atomic
def repository_create(*, tenant, name: str, node: Node, actor=None, backend: str = Backend.LOCAL,
                      **settings_: Any) -> BackupRepository:  # fmt: skip
    """A repository of ``backend``: ``local`` (a folder on ``node``), ``sftp`` (a folder on an SSH
    server, by default ``node`` itself; ``SFTP_FIELDS``) or ``s3`` (a bucket; ``S3_FIELDS``). ``node``
    has the backup role: it runs the repository's own jobs (init, check, sizes)."""
    if "backup" not in (node.roles or []):
        raise InvalidInput("This node does not have the backup role.", field="node")
    if not (name or "").strip():
        raise InvalidInput("A name is required.", field="name")
    unknown = set(settings_) - set(SFTP_FIELDS) - set(S3_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown setting {sorted(unknown)[0]}.", field=sorted(unknown)[0])
    fields = _backend_fields(backend, node, settings_, name=name)
    repo = BackupRepository(tenant=tenant, name=name.strip(), node=node, backend=backend,
                            password_encrypted=crypto.encrypt(crypto.new_password()), **fields)  # fmt: skip
    try:
        with transaction.atomic():
            repo.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("This tenant has a repository of this name.", field="name") from exc
    audit.created(repo, "backup.repository.create", actor=actor)
    repositories.enqueue(repo, "backup.repository.init", actor=actor)
    return repo


@transaction.atomic
def repository_update(*, repository: BackupRepository, data: dict, actor=None) -> BackupRepository:
    """Change an SFTP or S3 repository's connection (a moved server, a new host key, rotated S3 keys):
    the settings of its own backend only; a secret left out stays as it is. Audited without secrets."""
    repo = repositories.locked(repository)
    own = {Backend.SFTP: SFTP_FIELDS, Backend.S3: S3_FIELDS}.get(repo.backend, ())
    for key in data:
        if key not in own:
            raise InvalidInput(f"{key} is not a setting of a {repo.backend} repository.", field=key)
    if not data:
        return repo
    current = {f: getattr(repo, f) for f in own if hasattr(repo, f)}
    merged = {**current, **data}
    if repo.backend == Backend.SFTP and not data.get("sftp_private_key"):
        merged.pop("sftp_private_key", None)
        keep_key = (repo.sftp_public_key, repo.sftp_key_encrypted)
    else:
        keep_key = None
    if repo.backend == Backend.S3 and not data.get("s3_secret_key"):
        merged["s3_secret_key"] = crypto.S3_SECRETS.decrypt(repo.s3_secret_encrypted)
    fields = _backend_fields(repo.backend, repo.node, merged, name=repo.name)
    if keep_key is not None:
        fields["sftp_public_key"], fields["sftp_key_encrypted"] = keep_key
    with audit.change(repo, "backup.repository.update", actor=actor) as change:
        for key, value in fields.items():
            setattr(repo, key, value)
        repo.save(update_fields=[*fields, "updated_at"])
        if data.get("s3_secret_key") or data.get("sftp_private_key"):
            change.mark(credentials="replaced")  # that they changed, never what they are
    return repo


def repository_test(*, repository: BackupRepository, actor=None):
    """ "Test connection": the repository's node opens it (``restic cat config``) and the outcome is
    on the repository (``last_test_*``), in plain words (a job)."""
    return repositories.enqueue(repository, "backup.repository.test", actor=actor)


@transaction.atomic
def repository_delete(*, repository: BackupRepository, confirm: str | None, actor=None) -> BackupRepository:
    """Irreversible (every snapshot in it goes): ``confirm`` repeats its name; no policy may use it."""
    repo = repositories.locked(repository)
    if confirm != repo.name:
        raise InvalidInput(f'Deleting removes every snapshot in it: send {{"confirm": "{repo.name}"}}.',
                           field="confirm")  # fmt: skip
    if repo.policies.exists():
        raise Conflict("Policies back up into this repository: move or delete them first.", code="in_use")
    return repositories.move(repo, "delete", actor=actor, lock=False)


def repository_check(*, repository: BackupRepository, actor=None):
    """``restic check`` now, reading the next twelfth of the data (a job)."""
    return repositories.enqueue(repository, "backup.repository.check", actor=actor)


def repository_export_password(*, repository: BackupRepository, user, code: str = "", password: str = "") -> dict:
    """Everything needed to open the repository without mPanel: the caller proves it is them again
    (a current two-factor code, or the account password). Answers the restic password and, for a
    remote backend, its credentials (an SFTP repository's private key and the host key to trust, an
    S3 repository's keys), with ``environment``: the variables restic reads for all of them. Audited;
    no secret is in the audit record."""
    mfa.require_reauth(user, code=code, password=password)
    secret = crypto.decrypt(repository.password_encrypted)
    env = {"RESTIC_REPOSITORY": repository.location, "RESTIC_PASSWORD": secret}
    out: dict[str, Any] = {"password": secret, "environment": env}
    if repository.backend == Backend.SFTP:
        host, port = repository.sftp_host, repository.sftp_port
        host = f"[{host}]:{port}" if port != 22 else host  # how ssh names a host on another port in known_hosts
        out["sftp_private_key"] = crypto.SFTP_KEYS.decrypt(repository.sftp_key_encrypted)
        out["sftp_known_hosts"] = f"{host} {repository.sftp_host_key}"
    elif repository.backend == Backend.S3:
        out["s3_access_key_id"] = repository.s3_access_key_id
        out["s3_secret_key"] = crypto.S3_SECRETS.decrypt(repository.s3_secret_encrypted)
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = out["s3_access_key_id"], out["s3_secret_key"]
        if repository.s3_region:
            env["AWS_DEFAULT_REGION"] = repository.s3_region
    audit.record(action="backup.repository.export_password", obj=repository, actor=user,
                 after={"backend": repository.backend})  # fmt: skip
    return out


def _stats_into(repo: BackupRepository, result: dict) -> None:
    fields = {k: int(result[s]) for k, s in (("size_bytes", "size_bytes"), ("raw_bytes", "raw_bytes"),
                                              ("snapshot_count", "snapshots")) if s in result}  # fmt: skip
    if fields:
        BackupRepository.all_tenants.filter(pk=repo.pk).update(**fields)


def repository_converge(repo: BackupRepository, job_type: str) -> dict:
    driver = driver_for(repo.node)
    if job_type == "backup.repository.delete" or repo.status == RepoStatus.DELETING:
        args = {"repository": repo_spec(repo)}
        if repo.backend == Backend.SFTP and repo.sftp_path.startswith("/"):
            args["sftp_local"] = repo.sftp_path  # the folder goes when it is on the repository's node
        result = driver.backup("repo_delete", args)
        audit.deleted(repo, "backup.repository.deleted", actor=audit.SYSTEM)
        Restore.objects.filter(snapshot__repository=repo).delete()
        Snapshot.objects.filter(repository=repo).delete()
        repo.delete()
        return result
    if job_type == "backup.repository.check":
        return _check(repo, driver)
    if job_type == "backup.repository.test":
        return _test(repo, driver)
    wanted = repositories.wanted(repo, job_type)
    if wanted is None:
        return {"skipped": repo.status}
    result = driver.backup("repo_init", {"repository": repo_spec(repo)})
    repositories.converged(repo, RepoStatus.ACTIVE)
    _stats_into(repo, result)
    return result


def _test(repo: BackupRepository, driver) -> dict:
    result = driver.backup("repo_test", {"repository": repo_spec(repo)})
    ok = bool(result.get("ok"))
    output = str(result.get("output", ""))[:2000]
    BackupRepository.all_tenants.filter(pk=repo.pk).update(last_test_at=timezone.now(), last_test_ok=ok,
                                                           last_test_output=output)  # fmt: skip
    audit.record(action="backup.repository.tested", obj=repo, actor=None, changes={"last_test_ok": [None, ok]})
    if ok and repo.status in (RepoStatus.PENDING, RepoStatus.ERROR):
        # The connection works now (e.g. the key was just authorized): make the repository without waiting
        # for the init job's next retry.
        repositories.enqueue(repo, "backup.repository.init", actor=audit.SYSTEM)
    return {"ok": ok, "output": output}


def _check(repo: BackupRepository, driver) -> dict:
    """``restic check`` reading the next twelfth of the data: every byte is read once in 12 checks."""
    subset = f"{repo.check_round % CHECK_SUBSETS + 1}/{CHECK_SUBSETS}"
    result = driver.backup("check", {"repository": repo_spec(repo), "subset": subset})
    ok = bool(result.get("ok"))
    BackupRepository.all_tenants.filter(pk=repo.pk).update(
        last_check_at=timezone.now(), last_check_ok=ok, last_check_output=str(result.get("output", ""))[:4000],
        check_round=repo.check_round + 1,
    )  # fmt: skip
    _stats_into(repo, result)
    if not ok:
        audit.record(action="backup.repository.check_failed", obj=repo, actor=None,
                     changes={"last_check_ok": [repo.last_check_ok, False]})  # fmt: skip
        record_event(EVENT_CHECK_FAILED, tenant=repo.tenant, reason="restic check failed", actor=None,
                     data={"repository": str(repo.pk), "name": repo.name, "subset": subset})  # fmt: skip
        log.error("backup repository %s failed its check: %s", repo.pk, result.get("output"))
    return {"ok": ok, "subset": subset}


# --- policies -----------------------------------------------------------------------------------------


def _clean_policy(data: dict, tenant) -> dict:
    out = dict(data)
    if "schedule" in out:
        out["schedule"] = " ".join(str(out["schedule"]).split())
        cron_of(out["schedule"])
    if "resources" in out:
        refs = []
        for ref in out["resources"] or []:
            kind, pk = parse_ref(ref)
            obj = source(kind).get(pk)  # the tenant's own, or a 400
            refs.append(f"{kind}:{obj.pk}")
        out["resources"] = sorted(set(refs))
    repo = out.get("repository")
    if repo is not None and repo.tenant_id != tenant.pk:
        raise InvalidInput("No such repository.", field="repository")
    customer = out.get("customer")
    if customer is not None and customer.tenant_id != tenant.pk:
        raise InvalidInput("No such customer.", field="customer")
    defaults = {"last": BackupPolicy._meta.get_field("keep_last").default}
    if not any(out.get(f"keep_{k}", defaults.get(k, 0)) for k in ("last", "daily", "weekly", "monthly")):
        raise InvalidInput("Keep at least one snapshot (keep_last, or keep_daily/weekly/monthly).", field="keep_last")
    return out


def cron_of(expression: str) -> crontab:
    parts = expression.split()
    if len(parts) != 5:
        raise InvalidInput("Five fields: minute hour day-of-month month day-of-week.", field="schedule")
    try:
        return crontab(minute=parts[0], hour=parts[1], day_of_month=parts[2], month_of_year=parts[3],
                       day_of_week=parts[4])  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"Not a cron expression: {exc}", field="schedule") from exc


@transaction.atomic
def policy_create(*, tenant, actor=None, **data) -> BackupPolicy:
    policy = BackupPolicy(tenant=tenant, **_clean_policy(data, tenant))
    try:
        with transaction.atomic():
            policy.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("This tenant has a policy of this name.", field="name") from exc
    audit.created(policy, "backup.policy.create", actor=actor)
    return policy


@transaction.atomic
def policy_update(*, policy: BackupPolicy, data: dict, actor=None) -> BackupPolicy:
    policy = BackupPolicy.objects.select_for_update().get(pk=policy.pk)
    fields = _clean_policy({"keep_last": policy.keep_last, **data}, policy.tenant)
    with audit.change(policy, "backup.policy.update", actor=actor):
        for key, value in fields.items():
            setattr(policy, key, value)
        try:
            with transaction.atomic():
                policy.save()
        except IntegrityError as exc:
            raise InvalidInput("This tenant has a policy of this name.", field="name") from exc
    return policy


@transaction.atomic
def policy_delete(*, policy: BackupPolicy, actor=None) -> None:
    """The policy goes; its snapshots stay in the repository (retention by hand from then on)."""
    audit.deleted(policy, "backup.policy.delete", actor=actor)
    policy.delete()


@transaction.atomic
def policy_refs(policy: BackupPolicy) -> list[str]:
    """What a policy backs up now: its ``resources``, and its customer's whole account."""
    refs = set(policy.resources or [])
    if policy.customer_id is not None:
        refs |= set(customer_resources(policy.tenant_id, policy.customer_id))
    return sorted(refs)


def policy_run(*, policy: BackupPolicy, actor=None, reason: str = Reason.MANUAL) -> list[Snapshot]:
    """A snapshot of every resource of the policy now (each one job). A customer policy's run is
    one snapshot set (the account backup): its snapshots share ``set_id``, tagged in restic."""
    made = []
    set_id = uuid.uuid4() if policy.customer_id is not None else None
    for ref in policy_refs(policy):
        kind, pk = parse_ref(ref)
        try:
            made.append(snapshot_create(tenant=policy.tenant, repository=policy.repository, resource_kind=kind,
                                        resource_id=pk, policy=policy, reason=reason, actor=actor,
                                        set_id=set_id))  # fmt: skip
        except InvalidInput as exc:  # a resource deleted since: the others are still backed up
            log.warning("policy %s: %s skipped: %s", policy.pk, ref, exc)
    BackupPolicy.objects.filter(pk=policy.pk).update(last_run_at=timezone.now())
    return made


# --- snapshots ----------------------------------------------------------------------------------------


@transaction.atomic
def snapshot_create(*, tenant, repository: BackupRepository, resource_kind: str, resource_id, actor=None,
                    policy: BackupPolicy | None = None, reason: str = Reason.MANUAL,
                    set_id=None) -> Snapshot:  # fmt: skip
    """Back up one resource now (a job): the answer is the snapshot row, ``pending`` until it is taken."""
    src = source(resource_kind)
    obj = src.get(resource_id)
    if repository.tenant_id != tenant.pk:
        raise InvalidInput("No such repository.", field="repository")
    if repository.status == RepoStatus.DELETING:
        raise Conflict("This repository is being deleted.", code="deleting")
    if not reaches(repository, src.node(obj)):
        raise InvalidInput("This repository is not reachable from the resource's node.", field="repository")
    snap = Snapshot(tenant=tenant, repository=repository, policy=policy, resource_kind=resource_kind,
                    resource_id=obj.pk, resource_label=src.label(obj), reason=reason, set_id=set_id)  # fmt: skip
    if reason == Reason.FINAL:
        snap.keep_until = timezone.now() + timedelta(days=settings.MPANEL_BACKUP_FINAL_KEEP_DAYS)
    snap.save(force_insert=True)
    audit.created(snap, "backup.snapshot.create", actor=actor)
    snapshots.enqueue(snap, "backup.snapshot.run", actor=actor)
    return snap


def _node_for(snap_kind: str, obj: Any, repo: BackupRepository) -> Node:
    # A zone's master file comes from the panel: the repository's node takes it in.
    return repo.node if snap_kind == "zone" else source(snap_kind).node(obj)


def _take(repo: BackupRepository, kind: str, obj: Any, reason: str, set_id=None) -> dict:
    src = source(kind)
    args = {"repository": repo_spec(repo), "resource": f"{kind}-{obj.pk.hex}", "reason": reason,
            "source": src.spec(obj)}  # fmt: skip
    if set_id is not None:
        args["set"] = set_id.hex
    return driver_for(_node_for(kind, obj, repo)).backup("run", args)


def _record_taken(snap: Snapshot, result: dict) -> None:
    with audit.change(snap, "backup.snapshot.done", actor=audit.SYSTEM):
        snap.status = SnapshotStatus.DONE
        snap.restic_id = str(result["snapshot"])
        snap.taken_at = parse_datetime(str(result.get("time", ""))) or timezone.now()
        snap.files = result.get("files")
        snap.size_bytes = result.get("size_bytes")
        snap.added_bytes = result.get("added_bytes")
        snap.manifest = result.get("manifest") or {}
        snap.last_error = ""
        snap.save()


def snapshot_converge(snap: Snapshot, job_type: str) -> dict:
    if job_type == "backup.snapshot.forget":
        return _forget(snap)
    if snap.status != SnapshotStatus.PENDING:
        return {"skipped": snap.status}
    src = source(snap.resource_kind)
    obj = src.model.objects.filter(pk=snap.resource_id).first()
    if obj is None:
        raise NodeError(f"The {src.kind} is gone: nothing to back up.", permanent=True)
    result = _take(snap.repository, snap.resource_kind, obj, snap.reason, snap.set_id)
    if src.engine(obj):
        result["manifest"] = {**(result.get("manifest") or {}), "engine": src.engine(obj)}
    _record_taken(snap, result)
    if snap.policy_id is not None:
        BackupPolicy.objects.filter(pk=snap.policy_id).update(last_run_status=RunStatus.OK, last_run_error="")
        try:
            _retention(snap)
        except NodeError as exc:  # the snapshot is taken and recorded; the next run prunes again
            log.warning("retention of %s failed: %s", snap.restic_host, exc.message)
            BackupPolicy.objects.filter(pk=snap.policy_id).update(last_run_error=f"retention: {exc.message}"[:2000])
    else:
        _refresh_stats(snap.repository)
    return {"snapshot": snap.restic_id, "files": snap.files, "size_bytes": snap.size_bytes}


def snapshot_failed(pk: Any, error: str) -> None:
    """A scheduled snapshot that failed shows on its policy (the admin's to-do list reads it)."""
    snap = Snapshot.all_tenants.filter(pk=pk).first()
    if snap is not None and snap.policy_id is not None:
        BackupPolicy.all_tenants.filter(pk=snap.policy_id).update(last_run_status=RunStatus.FAILED,
                                                                  last_run_error=error[:2000])  # fmt: skip


def _retention(snap: Snapshot) -> None:
    """``restic forget --prune`` under the policy's keep-* rules, for this resource's snapshots."""
    policy, repo = snap.policy, snap.repository
    args = {"repository": repo_spec(repo), "resource": f"{snap.resource_kind}-{snap.resource_id.hex}",
            "keep": policy.keep}  # fmt: skip
    result = driver_for(repo.node).backup("forget", args)
    _mark_forgotten(repo, snap, set(result.get("kept") or []))
    _stats_into(repo, result)


def _mark_forgotten(repo: BackupRepository, snap: Snapshot, left: set[str]) -> None:
    gone = Snapshot.objects.filter(repository=repo, resource_id=snap.resource_id, status=SnapshotStatus.DONE)
    gone = gone.exclude(restic_id__in=left)
    for row in gone:
        with audit.change(row, "backup.snapshot.forgotten", actor=audit.SYSTEM):
            row.status = SnapshotStatus.FORGOTTEN
            row.save(update_fields=["status", "updated_at"])


def _refresh_stats(repo: BackupRepository) -> None:
    try:
        _stats_into(repo, driver_for(repo.node).backup("stats", {"repository": repo_spec(repo)}))
    except NodeError as exc:  # the snapshot is taken: sizes are refreshed by the next run
        log.warning("backup stats of %s: %s", repo.pk, exc.message)


@transaction.atomic
def snapshot_forget(*, snapshot: Snapshot, actor=None) -> Snapshot:
    """Remove the snapshot from the repository (``restic forget --prune``; a job)."""
    snap = snapshots.locked(snapshot)
    if snap.status != SnapshotStatus.DONE:
        raise Conflict(f"Only a finished snapshot can be forgotten; this one is {snap.status}.", code="conflict")
    if snap.restores.filter(status__in=[TaskStatus.PENDING, TaskStatus.RUNNING]).exists():
        raise Conflict("A restore from this snapshot is running.", code="restoring")
    audit.record(action="backup.snapshot.forget", obj=snap, actor=actor)
    snapshots.enqueue(snap, "backup.snapshot.forget", actor=actor)
    return snap


def _forget(snap: Snapshot) -> dict:
    if snap.status != SnapshotStatus.DONE:
        return {"skipped": snap.status}
    repo = snap.repository
    args = {"repository": repo_spec(repo), "resource": f"{snap.resource_kind}-{snap.resource_id.hex}",
            "ids": [snap.restic_id]}  # fmt: skip
    result = driver_for(repo.node).backup("forget", args)
    _mark_forgotten(repo, snap, set(result.get("kept") or []))
    _stats_into(repo, result)
    return {"forgotten": snap.restic_id}


def expire_final_snapshots() -> int:
    """Final snapshots (taken before a deletion) past their ``keep_until`` are forgotten."""
    count = 0
    with all_tenants():
        due = Snapshot.all_tenants.filter(reason=Reason.FINAL, status=SnapshotStatus.DONE,
                                          keep_until__lt=timezone.now()).select_related("tenant")  # fmt: skip
        for snap in due:
            job_key = f"backup.snapshot.forget:{snap.pk}"
            snapshots.enqueue(snap, "backup.snapshot.forget", actor=audit.SYSTEM, key=job_key)
            count += 1
    return count


# --- restores -----------------------------------------------------------------------------------------


NEW = "new"  # ``target`` of a restore that makes the resource it restores into
NEW_KINDS = tuple(ResourceKind)  # every kind can be restored into a new resource
# States of a new target still being made on its node (its own job): the restore job waits for it. A
# zone is not waited for (its records are the panel's: a pending zone is only a push not yet made);
# a mailbox has no state (its Maildir is made by the restore).
BEING_MADE = {
    ResourceKind.WEBSITE: {"pending"},
    ResourceKind.DATABASE: {"pending"},
    ResourceKind.POD: {PodStatus.PENDING, PodStatus.PROVISIONING},
}


@transaction.atomic
def restore_create(*, snapshot: Snapshot, target_id=None, actor=None, hostname: str = "", suffix: str = "",
                   name: str = "", password: str = "") -> Restore:  # fmt: skip
    """Restore ``snapshot`` into the resource it was taken of (``target_id`` empty: in place, a
    pre-restore snapshot first), into another of the tenant's resources of the same kind (and
    engine), or (``target_id == "new"``) into a new resource made here through its own app's create
    service (its validation and plan limits apply: a refusal is a 4xx and nothing is made). A job;
    the answer is the restore, ``pending``, naming its target."""
    if snapshot.status != SnapshotStatus.DONE:
        raise Conflict(f"Only a finished snapshot can be restored; this one is {snapshot.status}.", code="conflict")
    src = source(snapshot.resource_kind)
    if target_id == NEW:
        target = _new_target(snapshot, hostname=hostname, suffix=suffix, name=name, password=password, actor=actor)
        in_place = False
    else:
        if hostname or suffix or name or password:
            raise InvalidInput('hostname, suffix, name and password name a new resource: send "target": "new".',
                               field="target")  # fmt: skip
        in_place = target_id in (None, "", snapshot.resource_id, str(snapshot.resource_id))
        target = src.get(snapshot.resource_id if in_place else target_id)
    if not in_place:
        original = src.model.objects.filter(pk=snapshot.resource_id).first()
        if original is not None and src.engine(original) != src.engine(target):
            raise InvalidInput("The target is another engine than the snapshot's.", field="target")
        if snapshot.manifest.get("engine", src.engine(target)) != src.engine(target):
            raise InvalidInput("The target is another engine than the snapshot's.", field="target")
    if not reaches(snapshot.repository, src.node(target)):
        raise InvalidInput("The repository is not reachable from the target's node.", field="target")
    if Restore.objects.filter(target_id=target.pk, status__in=[TaskStatus.PENDING, TaskStatus.RUNNING]).exists():
        raise Conflict("A restore into this resource is under way.", code="restoring")
    restore = Restore(tenant=snapshot.tenant, snapshot=snapshot, target_kind=snapshot.resource_kind,
                      target_id=target.pk, target_label=src.label(target), in_place=in_place)  # fmt: skip
    restore.save(force_insert=True)
    audit.created(restore, "backup.restore.create", actor=actor)
    restores.enqueue(restore, "backup.restore.run", actor=actor)
    return restore


def _new_target(snapshot: Snapshot, *, hostname: str, suffix: str, name: str, password: str, actor) -> Any:
    """The resource a "restore to a new resource" goes into, made by its own app's create service
    (its checks, plan limits and provisioning job; in this transaction, so a refusal leaves
    nothing). It takes the original's customer, node or server and settings where the original is
    still there."""
    day = timezone.localdate().strftime("%Y%m%d")
    tenant, kind = snapshot.tenant, snapshot.resource_kind
    if (hostname and kind != ResourceKind.WEBSITE) or (suffix and kind != ResourceKind.DATABASE):
        raise InvalidInput("hostname is for a website, suffix for a database; name for a mailbox, zone or pod.",
                           field="hostname" if hostname else "suffix")  # fmt: skip
    if (name and kind in (ResourceKind.WEBSITE, ResourceKind.DATABASE)) or (password and kind != ResourceKind.MAILBOX):
        raise InvalidInput("name is for a mailbox, zone or pod; password for a mailbox.",
                           field="name" if name else "password")  # fmt: skip
    if kind == ResourceKind.WEBSITE:
        original = Website.objects.filter(pk=snapshot.resource_id).first()
        settings_of = {}
        if original is not None:
            settings_of = {"customer": original.customer, "document_root": original.document_root,
                           "php_version": original.php_version}  # fmt: skip
        domain = hostname or f"restored-{day}.{snapshot.resource_label}"
        return website_services.website_create(tenant=tenant, primary_domain=domain, actor=actor,
                                               node=original.node if original else None, **settings_of)  # fmt: skip
    if kind == ResourceKind.DATABASE:
        original = Database.objects.select_related("server").filter(pk=snapshot.resource_id).first()
        if original is None:
            raise InvalidInput("The database this snapshot is of is gone: restore it into one of your databases "
                               '({"target": "<id>"}).', field="target")  # fmt: skip
        db_name = original.name + (suffix or f"_restored_{day}")
        return database_services.database_create(tenant=tenant, server=original.server, name=db_name,
                                                 customer=original.customer, actor=actor)  # fmt: skip
    if kind == ResourceKind.MAILBOX:
        return _new_mailbox(snapshot, name=name, password=password, day=day, actor=actor)
    if kind == ResourceKind.ZONE:
        if not name:
            raise InvalidInput("Name the new zone: name.", field="name")
        original = Zone.objects.filter(pk=snapshot.resource_id).first()
        # The DNS app's own rules: a valid zone name, this tenant's, in nobody else's tree.
        return dns_services.zone_create(tenant=tenant, name=name, node=original.node if original else None,
                                        actor=actor)  # fmt: skip
    if kind == ResourceKind.POD:
        original = CloudPod.objects.filter(pk=snapshot.resource_id).first()
        if original is None:
            raise InvalidInput("The pod this snapshot is of is gone: restore it into one of your pods "
                               '({"target": "<id>"}).', field="target")  # fmt: skip
        pod_name = (name or f"{original.name}-restored-{day}")[:63].strip().lower()
        if not POD_NAME_RE.match(pod_name):  # the pods API's own rule
            raise InvalidInput("Use 1-63 lower-case letters, digits and hyphens (a hostname label).", field="name")
        return pod_services.pod_create(tenant=tenant, name=pod_name, plan=original.plan, image=original.image,
                                       node=original.node, actor=actor)  # fmt: skip
    raise InvalidInput(f"A {kind} cannot be restored into a new one.", field="target")


def _new_mailbox(snapshot: Snapshot, *, name: str, password: str, day: str, actor) -> Mailbox:
    """A new mailbox in the original's mail domain (the domain named by the snapshot when the
    mailbox is gone), made by the mail app: its local-part rules, a free address, the plan's
    mailbox limit. Without ``password`` it gets a random one: set one before logging in."""
    original = Mailbox.objects.select_related("mail_domain").filter(pk=snapshot.resource_id).first()
    local, _, domain_name = snapshot.resource_label.partition("@")
    mail_domain = original.mail_domain if original else MailDomain.objects.filter(name=domain_name).first()
    if mail_domain is None:
        raise InvalidInput(f"The mail domain {domain_name} is gone: restore into one of your mailboxes "
                           '({"target": "<id>"}).', field="target")  # fmt: skip
    quota = {"quota_mb": original.quota_mb} if original else {}
    return mail_services.mailbox_create(mail_domain=mail_domain, local_part=name or f"{local}-restored-{day}",
                                        password=password or secrets.token_urlsafe(24), actor=actor,
                                        **quota)  # fmt: skip


@contextmanager
def _held(kind: str, target: Any, token: str) -> Iterator[None]:
    """The resource out of service while it is restored, and back afterwards whatever happens:
    - an active website answers its "suspended" page (the node's own suspended vhost, rendered for
      the time, the site's status untouched);
    - a mailbox's mail domain is suspended on its node (mail deferred with a 450, so senders retry;
      logins refused), held by a marker on the node that every mail sync meanwhile honours, then
      the node's real mail configuration is rendered again.
    A resource suspended already (e.g. for non-payment) stays so: its row is locked by the restore,
    so a suspension asked meanwhile waits and then applies. A database has no suspension; a pod is
    paused by the node for its copy."""
    if kind == ResourceKind.WEBSITE and target.status == WebsiteStatus.ACTIVE:
        driver = driver_for(target.node)
        driver.site_ensure(website_services.site_spec(target, "suspended"))
        try:
            yield
        finally:
            driver.site_ensure(website_services.site_spec(target, "active"))
        return
    if kind == ResourceKind.MAILBOX and not target.mail_domain.suspended:
        node, name = target.mail_domain.node, target.mail_domain.name
        driver = driver_for(node)
        # The hold is the node's own marker, so a mail sync another change runs meanwhile (a job with
        # the domain's real rows) renders the domain suspended too; the rendering below makes it so now.
        hold = {"domain": name, "token": token}
        driver.backup("mail_hold", {**hold, "hold": True})
        try:
            spec = mail_services.node_spec(node.pk)
            driver.mail_sync({**spec, "suspended": sorted({*spec["suspended"], name})})
            yield
        finally:
            driver.backup("mail_hold", {**hold, "hold": False})
            driver.mail_sync(mail_services.node_spec(node.pk))
        return
    yield


def restore_converge(restore: Restore, job_type: str) -> dict:
    """In place: a pre-restore snapshot, then the snapshot put back, the resource's row locked and
    the resource held out of service (``_held``) the whole time. The node stages a tree beside the
    live one and swaps it in whole; a database is loaded from ``restic dump`` piped into its client.
    A new target still being made (its own job) is waited for: this job is tried again."""
    if restore.status not in (TaskStatus.PENDING, TaskStatus.RUNNING):
        return {"skipped": restore.status}
    snap, repo = restore.snapshot, restore.snapshot.repository
    src = source(restore.target_kind)
    target = src.model.objects.select_for_update(of=("self",)).filter(pk=restore.target_id).first()
    if target is None or getattr(target, "status", None) in src.gone:
        raise NodeError(f"The {src.kind} to restore into is gone.", permanent=True)
    if getattr(target, "status", None) in BEING_MADE.get(restore.target_kind, ()):  # not made on its node yet
        raise NodeError(f"The {src.kind} {src.label(target)} is still being made; the restore waits for it.")
    with _held(restore.target_kind, target, restore.pk.hex):
        if restore.in_place:
            _step(restore, "pre-restore snapshot")
            pre = Snapshot(tenant=restore.tenant, repository=repo, resource_kind=snap.resource_kind,
                           resource_id=target.pk, resource_label=src.label(target),
                           reason=Reason.PRE_RESTORE)  # fmt: skip
            pre.save(force_insert=True)
            audit.created(pre, "backup.snapshot.create", actor=audit.SYSTEM)
            _record_taken(pre, _take(repo, snap.resource_kind, target, Reason.PRE_RESTORE))
            restore.pre_snapshot = pre
        _step(restore, "restoring")
        args = {"repository": repo_spec(repo), "snapshot": snap.restic_id, "source": src.spec(target),
                "progress": restore.pk.hex}  # fmt: skip
        driver = driver_for(_node_for(snap.resource_kind, target, repo))
        with _progress_watched(restore, driver):
            result = driver.backup("restore", args)
    if snap.resource_kind == "zone":
        text = _reorigined(result.pop("text", ""), target.origin)
        dns_services.zone_import(zone=target, zone_file=text, replace=True, actor=audit.SYSTEM)
    with audit.change(restore, "backup.restore.done", actor=audit.SYSTEM):
        restore.status, restore.step, restore.finished_at, restore.last_error = TaskStatus.DONE, "", timezone.now(), ""
        restore.progress = 100
        restore.save()
    cache.delete(progress_key(restore.pk))
    return {"restored": snap.restic_id, **{k: v for k, v in result.items() if k in ("files", "rows")}}


def _reorigined(text: str, origin: str) -> str:
    """A zone's master file (``$ORIGIN`` first, then names relative to it) read as another zone's:
    restoring into a zone of another name keeps every record under the new name."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.upper().startswith("$ORIGIN"):
            lines[i] = f"$ORIGIN {origin}"
            break
    return "\n".join(lines) + "\n"


def progress_key(pk: Any) -> str:
    return f"backup.restore.progress:{pk}"


def restore_progress(restore: Restore) -> dict | None:
    """How far a restore is: ``{percent, bytes_done, bytes_total}``. A finished one is 100 (its row);
    a running one reads what its job last heard from the node (the cache, shared by every process:
    the restore's row is locked by its job until the end, so a write there would show only then)."""
    if restore.status == TaskStatus.DONE:
        return {"percent": 100.0, "bytes_done": None, "bytes_total": None}
    if restore.status == TaskStatus.RUNNING:
        live = cache.get(progress_key(restore.pk))
        if isinstance(live, dict):
            return live
        return {"percent": 0.0, "bytes_done": None, "bytes_total": None}
    return None


@contextmanager
def _progress_watched(restore: Restore, driver) -> Iterator[None]:
    """While the node restores, a thread asks it how far it is (``backup_restore_progress``) every
    ``MPANEL_BACKUP_PROGRESS_SECONDS`` and keeps the answer in the cache for the API and the admin."""
    stop = threading.Event()
    every = float(getattr(settings, "MPANEL_BACKUP_PROGRESS_SECONDS", 1.0))
    key, token = progress_key(restore.pk), restore.pk.hex

    def watch() -> None:
        try:
            while not stop.wait(every):
                try:
                    found = driver.backup("restore_progress", {"token": token})
                except NodeError:  # the node is busy or away for a moment: the next look tries again
                    continue
                if isinstance(found, dict) and "percent" in found:
                    cache.set(key, {k: found.get(k) for k in ("percent", "bytes_done", "bytes_total")}, 3600)
        finally:
            db.connection.close()  # a database cache opened this thread's own connection

    thread = threading.Thread(target=watch, daemon=True, name=f"restore-progress-{token[:8]}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def _step(restore: Restore, step: str) -> None:
    restore.step = step
    Restore.objects.filter(pk=restore.pk).update(step=step, status=TaskStatus.RUNNING)


# --- file download ----------------------------------------------------------------------------------


def download_plan(*, snapshot: Snapshot, path: str) -> dict:
    """What one file of a snapshot is, before it is streamed: a folder, a missing path or a file
    over ``MPANEL_BACKUP_DOWNLOAD_MAX_BYTES`` is refused here."""
    if snapshot.status != SnapshotStatus.DONE:
        raise Conflict(f"This snapshot is {snapshot.status}.", code="conflict")
    if snapshot.resource_kind not in ("website", "pod", "mailbox"):
        raise InvalidInput("Single files can be taken from website, mailbox and pod snapshots.", field="path")
    repo = snapshot.repository
    try:
        info = driver_for(repo.node).backup("file_stat", {"repository": repo_spec(repo),
                                                           "snapshot": snapshot.restic_id, "path": path})  # fmt: skip
    except NodeError as exc:
        raise InvalidInput(exc.message, field="path") from exc
    if info.get("type") != "file":
        raise InvalidInput("This path is a folder: download its files one by one, or restore it.", field="path")
    if int(info["size"]) > settings.MPANEL_BACKUP_DOWNLOAD_MAX_BYTES:
        raise InvalidInput(f"This file is over {settings.MPANEL_BACKUP_DOWNLOAD_MAX_BYTES} bytes: restore it instead.",
                           field="path")  # fmt: skip
    audit.record(action="backup.snapshot.download", obj=snapshot, changes={"path": [None, info["path"]]})
    return info


def download_chunks(*, snapshot: Snapshot, path: str, size: int):
    """The file's bytes, in pieces read from the node one by one (never the whole file in memory)."""
    repo = snapshot.repository
    spec, driver = repo_spec(repo), driver_for(repo.node)
    offset, piece = 0, 4 * 1024 * 1024
    while offset < size:
        result = driver.backup("file_read", {"repository": spec, "snapshot": snapshot.restic_id, "path": path,
                                             "offset": offset, "length": min(piece, size - offset)})  # fmt: skip
        data = bytes.fromhex(result.get("data", ""))
        if not data:
            return
        offset += len(data)
        yield data


# --- drills -------------------------------------------------------------------------------------------


@transaction.atomic
def drill_start(*, policy: BackupPolicy, actor=None) -> Drill:
    if Drill.objects.filter(policy=policy, status=DrillStatus.RUNNING).exists():
        raise Conflict("A drill of this policy is running.", code="drilling")
    drill = Drill(tenant=policy.tenant, policy=policy)
    drill.save(force_insert=True)
    audit.created(drill, "backup.drill.create", actor=actor)
    drills.enqueue(drill, "backup.drill.run", actor=actor)
    return drill


def drill_converge(drill: Drill, job_type: str) -> dict:
    """Each resource's latest snapshot restored into scratch on the node and compared with the
    snapshot; and ``restic check`` of the repository's structure. The result is on the policy; a
    failure is also a security event."""
    if drill.status != DrillStatus.RUNNING:
        return {"skipped": drill.status}
    policy, repo = drill.policy, drill.policy.repository
    driver = driver_for(repo.node)
    results = []
    check = driver.backup("check", {"repository": repo_spec(repo)})
    if not check.get("ok"):
        results.append({"resource": "repository", "ok": False, "problems": [str(check.get("output", ""))[-500:]]})
    for ref in policy_refs(policy):
        kind, pk = parse_ref(ref)
        latest = (Snapshot.objects.filter(repository=repo, resource_id=pk, status=SnapshotStatus.DONE)
                  .order_by("-taken_at").first())  # fmt: skip
        if latest is None:
            results.append({"resource": ref, "ok": False, "problems": ["no snapshot to restore"]})
            continue
        src = source(kind)
        obj = src.model.objects.filter(pk=pk).first()
        if obj is None and kind in ("database",):
            results.append({"resource": ref, "ok": False, "problems": ["the database is gone: no server to drill on"]})
            continue
        spec = src.spec(obj) if obj is not None else _detached_spec(kind, latest)
        node = _node_for(kind, obj, repo) if obj is not None else repo.node
        try:
            found = driver_for(node).backup("drill", {"repository": repo_spec(repo), "snapshot": latest.restic_id,
                                                      "source": spec,
                                                      "expected_rows": latest.manifest.get("rows", {})})  # fmt: skip
        except NodeError as exc:
            found = {"ok": False, "problems": [exc.message]}
        results.append({"resource": ref, "label": latest.resource_label, "snapshot": latest.restic_id, **found})
    passed = all(r.get("ok") for r in results)
    summary = (
        "passed"
        if passed
        else "; ".join(
            f"{r.get('label', r['resource'])}: {', '.join(r.get('problems') or [])[:300]}"
            for r in results
            if not r.get("ok")
        )
    )
    now = timezone.now()
    with audit.change(drill, "backup.drill.done", actor=audit.SYSTEM):
        drill.status = DrillStatus.PASSED if passed else DrillStatus.FAILED
        drill.results, drill.finished_at = results, now
        drill.save()
    BackupPolicy.objects.filter(pk=policy.pk).update(last_drill_at=now, last_drill_summary=summary[:2000],
        last_drill_status=RunStatus.PASSED if passed else RunStatus.FAILED)  # fmt: skip
    if not passed:
        record_event(EVENT_DRILL_FAILED, tenant=drill.tenant, reason="restore drill failed", actor=None,
                     data={"policy": str(policy.pk), "name": policy.name, "summary": summary[:500]})  # fmt: skip
        log.error("backup drill of policy %s failed: %s", policy.pk, summary)
    return {"status": drill.status, "resources": len(results)}


def _detached_spec(kind: str, snap: Snapshot) -> dict:
    # A deleted website's or pod's snapshot is still drilled: the restore goes to scratch only.
    if kind == "website":
        return {"kind": "files", "site": "w" + snap.resource_id.hex}
    if kind == "zone":
        return {"kind": "zone", "text": ""}
    if kind == "mailbox":
        local, _, domain = snap.resource_label.partition("@")
        return {"kind": "maildir", "domain": domain, "local": local}
    return {"kind": "pod", "pod": snap.resource_id.hex}


def drill_failed(pk: Any, error: str) -> None:
    drill = Drill.all_tenants.filter(pk=pk, status=DrillStatus.RUNNING).select_related("policy").first()
    if drill is None:
        return
    results = [{"resource": "drill", "ok": False, "problems": [error]}]
    Drill.all_tenants.filter(pk=pk).update(status=DrillStatus.FAILED, finished_at=timezone.now(), results=results)
    BackupPolicy.all_tenants.filter(pk=drill.policy_id).update(
        last_drill_at=timezone.now(), last_drill_status=RunStatus.FAILED, last_drill_summary=error[:2000]
    )
    record_event(EVENT_DRILL_FAILED, tenant=drill.tenant_id, reason="restore drill failed", actor=None,
                 data={"policy": str(drill.policy_id), "summary": error[:500]})  # fmt: skip


# --- the schedule -------------------------------------------------------------------------------------


def due_policies(now=None) -> dict:
    """Run every enabled policy whose cron time has come since its last run, start the drills that
    are due, and the repositories' rotating checks (daily). Called every minute (``backups.tick``)."""
    now = now or timezone.now()
    ran = drilled = checked = 0
    with all_tenants():
        for policy in BackupPolicy.all_tenants.filter(enabled=True).select_related("repository", "tenant"):
            try:
                last = policy.last_run_at or policy.created_at
                if cron_of(policy.schedule).remaining_estimate(last).total_seconds() <= 0:
                    policy_run(policy=policy, actor=audit.SYSTEM, reason=Reason.SCHEDULED)
                    ran += 1
                drill_last = policy.last_drill_at or policy.created_at
                drill_due = policy.drill_interval_days and now - drill_last >= timedelta(
                    days=policy.drill_interval_days
                )
                if drill_due and not Drill.all_tenants.filter(policy=policy, status=DrillStatus.RUNNING).exists():
                    drill_start(policy=policy, actor=audit.SYSTEM)
                    drilled += 1
            except (InvalidInput, Conflict) as exc:
                log.warning("backup policy %s: %s", policy.pk, exc)
        stale = now - timedelta(days=1)
        for repo in BackupRepository.all_tenants.filter(status=RepoStatus.ACTIVE).select_related("tenant"):
            key = f"backup.check:{repo.pk}:{now.date()}"  # one a day, however often the tick runs
            stale_check = repo.last_check_at is None or repo.last_check_at < stale
            if stale_check and not Job.all_tenants.filter(tenant=repo.tenant, idempotency_key=key).exists():
                repositories.enqueue(repo, "backup.repository.check", actor=audit.SYSTEM, key=key)
                checked += 1
    usage = 0
    if cache.add(f"backup.usage:{now.date()}", 1, timeout=26 * 3600):  # one report a day, however often the tick runs
        usage = report_storage_usage(timezone.localdate(now))
    return {"ran": ran, "drills": drilled, "checks": checked, "final_expired": expire_final_snapshots(),
            "usage_records": usage}  # fmt: skip


# --- the final snapshot before a delete -----------------------------------------------------------


def _final_policies(obj: Any, kind: str) -> list[BackupPolicy]:
    ref = f"{kind}:{obj.pk}"
    customer_id = customer_of(obj)
    # Read in Python, not by JSON containment: the embedded SQLite has none (a tenant has few policies).
    return [
        policy
        for policy in BackupPolicy.all_tenants.filter(tenant_id=obj.tenant_id, final_keep_days__gt=0)
        .select_related("repository", "repository__node")
        .order_by("-final_keep_days", "name")
        if ref in (policy.resources or []) or (customer_id is not None and policy.customer_id == customer_id)
    ]


def _final_rows(obj: Any, kind: str, actor) -> list[Snapshot]:
    """A pending ``final`` snapshot row per repository of the policies that name ``obj``."""
    rows, seen = [], set()
    for policy in _final_policies(obj, kind):
        repo = policy.repository
        if repo.pk in seen or repo.status not in (RepoStatus.ACTIVE, RepoStatus.PENDING):
            continue
        seen.add(repo.pk)
        snap = Snapshot(tenant_id=obj.tenant_id, repository=repo, policy=policy, resource_kind=kind,
                        resource_id=obj.pk, resource_label=source(kind).label(obj), reason=Reason.FINAL,
                        keep_until=timezone.now() + timedelta(days=policy.final_keep_days))  # fmt: skip
        snap.save(force_insert=True)
        audit.created(snap, "backup.snapshot.create", actor=actor)
        rows.append(snap)
    return rows


def _final_refusal(label: str, repo_name: str, message: str) -> str:
    return (f"The final backup of {label} into {repo_name} failed ({message}): nothing was deleted. Fix the "
            "repository, or delete anyway with ?force=true (ADMIN+).")  # fmt: skip


def _take_final(snap: Snapshot, obj: Any) -> None:
    src, repo = source(snap.resource_kind), snap.repository
    if obj is None:
        raise NodeError(f"the {src.kind} is gone", permanent=True)
    if not reaches(repo, src.node(obj)):
        raise NodeError("the repository is not reachable from the resource's node", permanent=True)
    result = _take(repo, snap.resource_kind, obj, Reason.FINAL)
    if src.engine(obj):
        result["manifest"] = {**(result.get("manifest") or {}), "engine": src.engine(obj)}
    _record_taken(snap, result)


def _final_error(snap: Snapshot, message: str, actor=audit.SYSTEM) -> None:
    with audit.change(snap, "backup.snapshot.error", actor=actor):
        snap.status, snap.last_error = SnapshotStatus.ERROR, f"final backup failed: {message}"[:2000]
        snap.save()


def final_snapshot(obj: Any, *, actor=None, force: bool = False, then: dict | None = None) -> Job | None:
    """``apps.jobs.lifecycle.BEFORE_DELETE``: a resource that a policy backs up is snapshotted once
    more before it is deleted (``reason=final``, kept ``final_keep_days``), one per repository.

    From a Lifecycle's delete (``then`` given): the snapshots are one job, ``backup.snapshot.final``,
    answered so the delete job waits for it; the row is marked deleting at once and the request
    answers 202. The job stores the delete job when every snapshot is taken (or the delete was
    forced); after a failed one the resource is ``error``, the reason in its ``last_error``, nothing removed.
    Without ``then`` (a row deleted in this transaction: a mailbox), the snapshots are taken now, and a
    failure stops the delete with a 409 that says why. An ADMIN+'s ``?force=true`` deletes anyway:
    the failure is then recorded on the snapshot row."""
    kind = kind_of(obj)
    if kind is None:
        return None
    rows = _final_rows(obj, kind, actor)
    if not rows:
        return None
    if then is not None:
        return snapshots.enqueue(rows[0], "backup.snapshot.final", actor=actor,
                                 snapshots=[str(r.pk) for r in rows], then=then)  # fmt: skip
    for snap in rows:
        try:
            _take_final(snap, obj)
        except NodeError as exc:
            if not force:
                raise Conflict(_final_refusal(snap.resource_label, snap.repository.name, exc.message),
                               code="final_backup_failed") from exc  # fmt: skip
            _final_error(snap, exc.message, actor=actor)
            log.warning("final backup of %s:%s failed, deleted anyway (forced): %s", kind, obj.pk, exc.message)
    return None


def final_run(job: Job) -> dict:
    """``backup.snapshot.final``: the final snapshots of a resource being deleted, then its delete
    job (``follow_up``). A node error that a retry can help is retried while attempts are left (not
    for a forced delete); then the snapshot is ``error`` and, unless the delete was forced, so is the
    resource (nothing removed)."""
    then, pks = job.payload.get("then") or {}, job.payload.get("snapshots") or []
    last = job.attempts >= job.max_attempts
    failures: list[str] = []
    rows = Snapshot.objects.filter(pk__in=pks).select_related("repository", "repository__node").order_by("pk")
    try:
        for snap in rows:
            if snap.status == SnapshotStatus.ERROR:
                failures.append(_final_refusal(snap.resource_label, snap.repository.name, snap.last_error))
            if snap.status != SnapshotStatus.PENDING:
                continue
            src = source(snap.resource_kind)
            try:
                _take_final(snap, src.model.objects.filter(pk=snap.resource_id).first())
            except (NodeError, crypto.UndecryptableSecret) as exc:
                permanent = getattr(exc, "permanent", True)
                message = getattr(exc, "message", None) or str(exc)
                if not permanent and not last and not then.get("force"):
                    raise  # tried again; the snapshots taken already stay taken (a forced delete does not wait)
                _final_error(snap, message)
                failures.append(_final_refusal(snap.resource_label, snap.repository.name, message))
    except Exception as exc:
        if not last or isinstance(exc, NodeError):
            raise
        # Anything else on the last attempt: the resource must not stay "deleting" for ever.
        failures.append(f"The final backup failed ({exc.__class__.__name__}): nothing was deleted.")
        follow_up(then, ok=False, error=failures[-1])
        raise
    outcome = follow_up(then, ok=not failures, error="; ".join(failures))
    if failures:
        log.warning("final backup of %s failed (%s): %s", then.get("pk"), outcome, failures)
    return {"snapshots": len(pks), "failed": len(failures), "delete": outcome}


# --- hosting plans with backups, and the storage they use -----------------------------------------

PLAN_POLICY_NAME = "Hosting plan backups"


@transaction.atomic
def customer_policy_ensure(*, tenant, customer, keep_last: int, actor=None) -> BackupPolicy | None:
    """A hosting plan whose config has ``backups`` (``{"keep": N}`` or ``N``) backs up its customer's
    whole account: the customer's own repository (made on the first active node with the backup
    role) and a customer policy keeping the last N snapshot sets, daily. Running it again changes
    only ``keep_last``. ``None`` (and a warning) when the platform has no backup node."""
    keep_last = max(1, min(int(keep_last), 1000))
    policy = BackupPolicy.all_tenants.filter(tenant=tenant, customer=customer, name=PLAN_POLICY_NAME).first()
    if policy is not None:
        if policy.keep_last != keep_last:
            policy_update(policy=policy, data={"keep_last": keep_last}, actor=actor)
        return policy
    repo = BackupRepository.all_tenants.filter(tenant=tenant, customer=customer).exclude(
        status=RepoStatus.DELETING).first()  # fmt: skip
    if repo is None:
        node = Node.all_tenants.filter(with_role("backup"), status=NodeStatus.ACTIVE).order_by("hostname").first()
        if node is None:
            log.warning("no node with the backup role: the plan backups of customer %s wait for one", customer.pk)
            return None
        repo = repository_create(tenant=tenant, name=f"customer-{customer.pk.hex[:12]}", node=node, actor=actor)
        BackupRepository.all_tenants.filter(pk=repo.pk).update(customer=customer)
    return policy_create(tenant=tenant, name=PLAN_POLICY_NAME, repository=repo, customer=customer,
                         keep_last=keep_last, actor=actor)  # fmt: skip


STORAGE_METER = "backup_storage"


def stored_bytes(tenant_id, customer_id=None) -> int:
    """Bytes on disk of the tenant's repositories (a customer's own ones with ``customer_id``)."""
    repos = BackupRepository.all_tenants.filter(tenant_id=tenant_id).exclude(status=RepoStatus.DELETING)
    if customer_id is not None:
        repos = repos.filter(customer_id=customer_id)
    return int(sum(repos.values_list("size_bytes", flat=True)))


def report_storage_usage(day=None) -> int:
    """Once a day: every live subscription whose product meters ``backup_storage`` (its catalog
    ``metering`` has ``"meter": "backup_storage"``) gets a usage record of the GB its customer's own
    repositories hold that day, rounded up to the MB (GB-days over a period: price the unit per
    GB-day; one record a day, keyed by the date, so a second report of a day counts nothing)."""
    day = day or timezone.localdate()
    made = 0
    with all_tenants():
        subs = Subscription.all_tenants.filter(
            status__in=[SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE],
            product__metering__meter=STORAGE_METER,
        ).select_related("product")
        for sub in subs:
            # Rounded up to the MB: a repository that holds anything is never billed as empty.
            gigabytes = (Decimal(stored_bytes(sub.tenant_id, sub.customer_id)) / Decimal(10**9)).quantize(
                Decimal("0.001"), rounding=ROUND_UP)  # fmt: skip
            if gigabytes <= 0:
                continue
            _record, new = usage_record(sub=sub, quantity=gigabytes, key=f"{STORAGE_METER}:{day.isoformat()}")
            made += int(new)
    return made
