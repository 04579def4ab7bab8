"""domain.* job handlers: the registrar calls. Each reads the domain as it is when it runs and does
nothing when the work is done already, so a job that runs twice (a retry after a lost worker, an
overlapping sweep) has the effect of running once. A registrar's refusal (RegistrarError) fails the
job at once, unless the driver says it is retryable (a registry fault, a broken connection); that
and anything else is retried with backoff, and the last failure is kept on the domain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import wraps

from apps.jobs.errors import tenant_message
from apps.jobs.registry import PermanentError, handler

from . import provisioning, services
from .registrars import RegistrarError


def _registrar_call(fn: Callable, on_failure: Callable[[object, str], object] = services.registrar_failed) -> Callable:
    @wraps(fn)
    def run(job) -> dict:
        domain_id = job.payload.get("domain")
        last = job.attempts >= job.max_attempts
        try:
            return fn(job, domain_id)
        except RegistrarError as exc:
            message = str(exc.message)
            if exc.retryable and not last:
                services.registrar_retrying(domain_id, message)
                raise  # a registry fault: the job runs again with backoff
            on_failure(domain_id, message)
            raise PermanentError(message) from exc
        except Exception as exc:
            if last:
                on_failure(domain_id, tenant_message(exc))
            raise

    return run


def _register(job, domain_id) -> dict:
    return services.apply_registration(domain_id=domain_id, years=int(job.payload.get("years") or 1),
                                       expires_at=job.payload.get("expires_at"))  # fmt: skip


# A registration that fails for good refunds or waits, as the tenant chose (apps/domains/provisioning.py).
register = handler("domain.register")(_registrar_call(_register, provisioning.registration_failed))


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
