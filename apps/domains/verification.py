"""Ownership proof: the TXT record ``_mpanel-challenge.<domain>`` must hold
``mpanel-verification=<token>``, looked up with dnspython at the resolvers in
``MPANEL_DNS_RESOLVERS`` (``["127.0.0.1:5353", "192.0.2.53"]``; empty: the system's resolvers)."""

from __future__ import annotations

from apps.dns import lookups
from apps.dns.lookups import resolver, txt_values

__all__ = ["answered_by_another_tenant", "resolver", "txt_values"]


def answered_by_another_tenant(domain) -> bool:
    """Is the challenge name inside a zone served for a tenant other than the domain's?"""
    return lookups.answered_by_another_tenant(
        record_name=domain.challenge_name, hostname=domain.name, tenant_id=domain.tenant_id
    )
