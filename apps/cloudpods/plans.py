"""Plans and images are configuration (``CLOUDPOD_PLANS``, ``CLOUDPOD_IMAGES`` in settings)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings


@dataclass(frozen=True)
class Plan:
    name: str
    vcpu: Decimal
    memory_mb: int
    disk_gb: int
    pids: int
    billing_product: str | None = None


def plans() -> dict[str, Plan]:
    out = {}
    for raw in settings.CLOUDPOD_PLANS:
        plan = Plan(
            name=raw["name"],
            vcpu=Decimal(str(raw["vcpu"])),
            memory_mb=int(raw["memory_mb"]),
            disk_gb=int(raw["disk_gb"]),
            pids=int(raw.get("pids", 256)),
            billing_product=raw.get("billing_product"),
        )
        out[plan.name] = plan
    return out


def get_plan(name: str) -> Plan | None:
    return plans().get(name)


def images() -> dict[str, dict]:
    return dict(settings.CLOUDPOD_IMAGES)
