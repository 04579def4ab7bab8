"""What can be backed up, one entry per kind: how to find a resource of the tenant, the node it
lives on, and what the node's ``agent/backups.py`` is told to copy (its ``source``).

Backups reads the resource apps (websites, databases, dns, cloudpods); they never import backups
(a deleted resource's final snapshot comes through ``apps.jobs.lifecycle.BEFORE_DELETE``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apps.cloudpods.models import CloudPod, PodStatus
from apps.common.exceptions import InvalidInput
from apps.databases import services as database_services
from apps.databases.models import Database, ObjectStatus
from apps.dns import services as dns_services
from apps.dns.models import Zone, ZoneStatus
from apps.mail.models import Mailbox, MailDomain
from apps.nodes.models import Node, Transport
from apps.websites.models import Website, WebsiteStatus

from .models import ResourceKind


@dataclass(frozen=True)
class Source:
    kind: str
    model: type
    label: Callable[[Any], str]
    node: Callable[[Any], Node]
    spec: Callable[[Any], dict]  # built for one node call: it may carry a decrypted secret
    gone: frozenset[str]
    engine: Callable[[Any], str] = lambda obj: ""  # a restore goes only into the same engine

    def get(self, pk) -> Any:
        """The tenant's resource (the scope in force decides whose): a missing or foreign one is a 400."""
        obj = self.model.objects.filter(pk=pk).first()
        if obj is None or getattr(obj, "status", None) in self.gone:
            raise InvalidInput(f"No {self.kind} {pk} in this tenant.", field="resource")
        return obj


SOURCES: dict[str, Source] = {
    ResourceKind.WEBSITE: Source(
        kind="website",
        model=Website,
        label=lambda site: site.primary_domain,
        node=lambda site: site.node,
        spec=lambda site: {"kind": "files", "site": site.site_id},
        gone=frozenset({WebsiteStatus.DELETED, WebsiteStatus.DELETING}),
    ),
    ResourceKind.DATABASE: Source(
        kind="database",
        model=Database,
        label=lambda db: db.full_name,
        node=lambda db: db.server.node,
        spec=lambda db: {
            "kind": db.server.engine,
            "server": database_services.server_spec(db.server),
            "name": db.full_name,
        },
        gone=frozenset({ObjectStatus.REMOVING}),
        engine=lambda db: db.server.engine,
    ),
    ResourceKind.ZONE: Source(
        kind="zone",
        model=Zone,
        label=lambda zone: zone.name,
        node=lambda zone: zone.node,
        spec=lambda zone: {"kind": "zone", "text": dns_services.zone_export(zone)},
        gone=frozenset({ZoneStatus.DELETING}),
    ),
    ResourceKind.MAILBOX: Source(
        kind="mailbox",
        model=Mailbox,
        label=lambda box: box.address,
        node=lambda box: box.mail_domain.node,
        spec=lambda box: {"kind": "maildir", "domain": box.mail_domain.name, "local": box.local_part},
        gone=frozenset(),  # a mailbox row is removed at once: gone is absent
    ),
    ResourceKind.POD: Source(
        kind="pod",
        model=CloudPod,
        label=lambda pod: pod.name,
        node=lambda pod: pod.node,
        spec=lambda pod: {"kind": "pod", "pod": pod.container_id},
        gone=frozenset({PodStatus.DELETED, PodStatus.DELETING}),
    ),
}


def source(kind: str) -> Source:
    try:
        return SOURCES[kind]
    except KeyError:
        raise InvalidInput(f"One of {', '.join(SOURCES)}.", field="resource_kind") from None


def customer_of(obj: Any):
    """The customer a resource is for (``None``: the tenant's own). A zone has none of its own."""
    if isinstance(obj, Mailbox):
        return obj.mail_domain.customer_id
    return getattr(obj, "customer_id", None)


def customer_resources(tenant_id, customer_id) -> list[str]:
    """A customer's whole hosting account as it is now: its websites, databases and mailboxes, and
    the DNS zones of its websites' and mail domains' names (``"<kind>:<id>"``, sorted)."""
    sites = Website.all_tenants.filter(tenant_id=tenant_id, customer_id=customer_id).exclude(
        status__in=SOURCES[ResourceKind.WEBSITE].gone
    )
    databases = Database.all_tenants.filter(tenant_id=tenant_id, customer_id=customer_id).exclude(
        status__in=SOURCES[ResourceKind.DATABASE].gone
    )
    mail_domains = MailDomain.all_tenants.filter(tenant_id=tenant_id, customer_id=customer_id)
    boxes = Mailbox.all_tenants.filter(tenant_id=tenant_id, mail_domain__in=mail_domains)
    names = set(sites.values_list("primary_domain", flat=True)) | set(mail_domains.values_list("name", flat=True))
    zones = Zone.all_tenants.filter(tenant_id=tenant_id, name__in=names).exclude(
        status__in=SOURCES[ResourceKind.ZONE].gone
    )
    refs = [f"website:{pk}" for pk in sites.values_list("pk", flat=True)]
    refs += [f"database:{pk}" for pk in databases.values_list("pk", flat=True)]
    refs += [f"mailbox:{pk}" for pk in boxes.values_list("pk", flat=True)]
    refs += [f"zone:{pk}" for pk in zones.values_list("pk", flat=True)]
    return sorted(refs)


def kind_of(obj: Any) -> str | None:
    """The kind of a resource row (``None``: not something backups knows)."""
    for kind, src in SOURCES.items():
        if isinstance(obj, src.model):
            return str(kind)
    return None


def parse_ref(ref: object) -> tuple[str, str]:
    """``"website:<uuid>"`` → (kind, id)."""
    if not isinstance(ref, str) or ":" not in ref:
        raise InvalidInput('Each resource is "<kind>:<id>", e.g. "website:<uuid>".', field="resources")
    kind, pk = ref.split(":", 1)
    source(kind)
    return kind, pk


def reaches(repository, resource_node: Node) -> bool:
    """An SFTP or S3 repository is reached from any node (over the network). A local-path repository
    is reached from its own node only (every local-transport node is this one machine)."""
    if repository.backend != "local":
        return True
    repo_node = repository.node
    if repo_node.pk == resource_node.pk:
        return True
    return repo_node.transport == Transport.LOCAL and resource_node.transport == Transport.LOCAL
