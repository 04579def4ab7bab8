"""Named reads of backups: what needs an operator's look (the admin dashboard's to-do list)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .models import BackupPolicy, BackupRepository, RunStatus


@dataclass(frozen=True)
class Failure:
    """One backup problem: a policy whose last drill or run failed, or a repository whose last
    check failed. It leaves the list by itself when the next drill, run or check passes."""

    obj: BackupPolicy | BackupRepository
    what: str  # "drill", "run", "check"
    tenant: str
    detail: str
    since: datetime | None


def failures(limit: int = 50) -> list[Failure]:
    """Every tenant's (the caller holds the platform-wide view), newest first."""
    found: list[Failure] = []
    policies = BackupPolicy.all_tenants.filter(last_drill_status=RunStatus.FAILED).select_related("tenant")
    for policy in policies.order_by("-last_drill_at")[:limit]:
        found.append(Failure(policy, "drill", policy.tenant.name, policy.last_drill_summary, policy.last_drill_at))
    runs = BackupPolicy.all_tenants.filter(last_run_status=RunStatus.FAILED).select_related("tenant")
    for policy in runs.order_by("-last_run_at")[:limit]:
        found.append(Failure(policy, "run", policy.tenant.name, policy.last_run_error, policy.last_run_at))
    repos = BackupRepository.all_tenants.filter(last_check_ok=False).select_related("tenant")
    for repo in repos.order_by("-last_check_at")[:limit]:
        found.append(Failure(repo, "check", repo.tenant.name, repo.last_check_output, repo.last_check_at))
    found.sort(key=lambda f: f.since.timestamp() if f.since else 0, reverse=True)
    return found[:limit]
