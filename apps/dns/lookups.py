"""DNS proofs of control over a name (a domain's ownership, a custom portal domain): a TXT record
looked up with dnspython at ``MPANEL_DNS_RESOLVERS`` (``host`` or ``host:port``, e.g.
``["127.0.0.1:5353", "192.0.2.53"]``; empty: the system's resolvers), and the rule that an answer
from a zone we serve for another tenant proves nothing."""

from __future__ import annotations

import dns.exception
import dns.nameserver
import dns.resolver
from django.conf import settings

from apps.dns.models import Zone
from apps.names import claims
from apps.names.models import NameDelegation


def resolver() -> dns.resolver.Resolver:
    configured = settings.MPANEL_DNS_RESOLVERS
    if not configured:
        return dns.resolver.Resolver()
    r = dns.resolver.Resolver(configure=False)
    servers = []
    for item in configured:
        host, _, port = str(item).rpartition(":") if str(item).count(":") == 1 else (str(item), "", "")
        servers.append(dns.nameserver.Do53Nameserver(host, int(port) if port else 53))
    r.nameservers = servers
    r.lifetime = settings.MPANEL_DNS_RESOLVER_TIMEOUT
    return r


def txt_values(name: str) -> list[str]:
    """The TXT strings at ``name`` (each record's strings joined), [] when there are none."""
    try:
        answer = resolver().resolve(name, "TXT", raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers, dns.exception.Timeout):
        return []
    if answer.rrset is None:
        return []
    return [b"".join(rd.strings).decode(errors="replace") for rd in answer.rrset]


def answered_by_another_tenant(*, record_name: str, hostname: str, tenant_id) -> bool:
    """Is the record inside a zone this platform serves for another tenant (one that did not delegate
    ``hostname``'s tree to this one)? A resolver reaching our shared servers would get that tenant's
    answer, which proves nothing about who controls the name."""
    owners = set(
        Zone.all_tenants.filter(name__in=claims.ancestors(record_name.rstrip(".")))
        .exclude(tenant_id=tenant_id)
        .values_list("tenant_id", flat=True)
    )
    if not owners:
        return False
    granted = NameDelegation.all_tenants.filter(grantee_id=tenant_id, tenant_id__in=owners)
    lifted = {g.tenant_id for g in granted if claims.within(hostname, g.name)}
    return bool(owners - lifted)
