"""The DNS proof of a custom portal domain: the TXT record ``_mpanel-verify.<host>`` must hold
``mpanel-verify=<token>`` (the lookup and the other-tenant rule: ``apps.dns.lookups``)."""

from __future__ import annotations

from apps.dns.lookups import answered_by_another_tenant, txt_values

__all__ = ["answered_by_another_tenant", "txt_values"]
