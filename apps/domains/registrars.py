"""Registrar drivers. A driver turns the panel's intent (register, renew, change nameservers,
transfer out) into the registrar's calls and answers the registrar's view of the domain.

Drivers register in ``DRIVERS`` (``@DRIVERS.register("epp")``); ``MPANEL_DOMAIN_REGISTRARS``
(``{"name": "dotted.path.Class"}``) adds or replaces drivers without code. A real one (EPP, a
reseller API) subclasses ``Registrar`` and raises ``RegistrarError`` when the registrar refuses;
``retryable`` says whether the job may try again (a registry fault) or must stop (a refusal).
Drivers are called from jobs (apps/domains/jobs.py), never in a request.
``manual`` talks to nobody: an operator does the work at the registrar and the panel records the
dates and nameservers it is given; ``epp`` (apps/domains/registrar_epp.py) speaks EPP to the
tenant's registry account (its domain settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.utils.module_loading import import_string

from apps.common.exceptions import Conflict, InvalidInput
from apps.common.registry import Registry


class RegistrarError(Conflict):
    code = "registrar_error"
    retryable = False  # True: a fault on the registrar's side or the way there; running again may pass


@dataclass
class RegistrarState:
    """What the registrar says after an operation."""

    expires_at: date | None
    nameservers: list[str]
    registered_at: date | None = None
    auth_info: str | None = None  # the transfer code the registry was given (EPP authInfo), when one was


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


class Registrar:
    name = ""

    def register(self, domain, *, years: int, nameservers: list[str], expires_at: date | None = None) -> RegistrarState:
        raise NotImplementedError

    def renew(self, domain, *, years: int, today: date) -> RegistrarState:
        """Extend from ``domain.expires_at``. A real driver sends that date as the registry's
        current expiry (EPP ``curExpDate``), so a replayed renewal is refused rather than doubled."""
        raise NotImplementedError

    def set_nameservers(self, domain, *, nameservers: list[str]) -> RegistrarState:
        raise NotImplementedError

    def transfer_out(self, domain) -> None:
        raise NotImplementedError


DRIVERS: Registry[type[Registrar]] = Registry("domain registrar")


@DRIVERS.register("manual")
class ManualRegistrar(Registrar):
    """Records by hand: the dates and nameservers the operator gives are the truth."""

    name = "manual"

    def register(self, domain, *, years, nameservers, expires_at=None):
        registered = domain.registered_at or date.today()
        return RegistrarState(
            expires_at=expires_at or add_years(registered, years), nameservers=nameservers, registered_at=registered
        )

    def renew(self, domain, *, years, today):
        # A renewal extends from the current expiry, or from today when the domain has lapsed.
        base = domain.expires_at if domain.expires_at and domain.expires_at >= today else today
        return RegistrarState(expires_at=add_years(base, years), nameservers=list(domain.nameservers))

    def set_nameservers(self, domain, *, nameservers):
        return RegistrarState(expires_at=domain.expires_at, nameservers=nameservers)

    def transfer_out(self, domain):
        return None


def names() -> list[str]:
    return sorted(set(DRIVERS.keys()) | set(getattr(settings, "MPANEL_DOMAIN_REGISTRARS", {})))


def get(name: str) -> Registrar:
    path = getattr(settings, "MPANEL_DOMAIN_REGISTRARS", {}).get(name)
    driver = import_string(path) if path else DRIVERS.get(name)
    if driver is None:
        raise InvalidInput(f"Unknown registrar; choose one of {', '.join(names())}.", field="registrar")
    return driver()
