"""domain.* job handlers: the registrar calls. Each reads the domain as it is when it runs and does
nothing when the work is done already, so a job that runs twice (a retry after a lost worker, an
overlapping sweep) has the effect of running once. A registrar's refusal (RegistrarError) fails the
job at once; anything else is retried with backoff, and the last failure is kept on the domain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import wraps

from apps.jobs.errors import tenant_message
from apps.jobs.registry import PermanentError, handler

from . import services
from .registrars import RegistrarError


def _registrar_call(fn: Callable) -> Callable:
    @wraps(fn)
    def run(job) -> dict:
        domain_id = job.payload.get("domain")
        try:
            return fn(job, domain_id)
        except RegistrarError as exc:
            services.registrar_failed(domain_id, str(exc.message))
            raise PermanentError(str(exc.message)) from exc
        except Exception as exc:
            if job.attempts >= job.max_attempts:
                services.registrar_failed(domain_id, tenant_message(exc))
            raise

    return run


@handler("domain.register")
@_registrar_call
def register(job, domain_id) -> dict:
    return services.apply_registration(domain_id=domain_id, years=int(job.payload.get("years") or 1),
                                       expires_at=job.payload.get("expires_at"))  # fmt: skip


@handler("domain.renew")
@_registrar_call
def renew(job, domain_id) -> dict:
    return services.apply_renewal(domain_id=domain_id, years=int(job.payload.get("years") or 1),
                                  from_expiry=job.payload.get("from_expiry"),
                                  today=date.fromisoformat(job.payload["today"]),
                                  auto=bool(job.payload.get("auto")))  # fmt: skip


@handler("domain.nameservers")
@_registrar_call
def nameservers(job, domain_id) -> dict:
    return services.apply_nameservers(domain_id=domain_id)


@handler("domain.transfer_out")
@_registrar_call
def transfer_out(job, domain_id) -> dict:
    return services.apply_transfer_out(domain_id=domain_id)
