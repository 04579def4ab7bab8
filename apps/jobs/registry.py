"""Job handlers by type. Each module registers its own: ``@handler("cloudpod.provision")``.

A handler receives the job (in its tenant's scope) and returns a JSON-able result. It must be
idempotent: read the actual state and converge to the wanted one, so running it twice has the
effect of running it once.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import TenantSafeError

HANDLERS: dict[str, Callable] = {}


def handler(job_type: str):
    def decorator(fn: Callable) -> Callable:
        if job_type in HANDLERS and HANDLERS[job_type] is not fn:
            raise ValueError(f"A handler for {job_type!r} is registered already.")
        HANDLERS[job_type] = fn
        return fn

    return decorator


def get(job_type: str) -> Callable | None:
    return HANDLERS.get(job_type)


class PermanentError(TenantSafeError):
    """A failure that retrying cannot fix (bad payload): the job fails at once. Its message is
    shown to the tenant (redacted: see ``apps.jobs.errors``), so write it for them."""
