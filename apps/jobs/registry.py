"""Job handlers by type. Each app registers its own in its ``jobs.py`` (imported by its
``AppConfig.ready``), with either spelling of the one decorator:

    from apps.jobs.registry import HANDLERS, PermanentError, handler

    @handler("cloudpod.provision")            # the same as @HANDLERS.register("cloudpod.provision")
    def provision(job): ...

A handler receives the job (in its tenant's scope) and returns a JSON-able result. It must be
idempotent: read the actual state and converge to the wanted one, so running it twice has the
effect of running it once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apps.common.registry import Registry

from .errors import TenantSafeError

HANDLERS: Registry[Callable[..., Any]] = Registry("job handler")


def handler(job_type: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the handler of ``job_type`` (one handler per type)."""
    return HANDLERS.register(job_type)


def get(job_type: str) -> Callable[..., Any] | None:
    return HANDLERS.get(job_type)


class PermanentError(TenantSafeError):
    """A failure that retrying cannot fix (bad payload): the job fails at once. Its message is
    shown to the tenant (redacted: see ``apps.jobs.errors``), so write it for them."""
