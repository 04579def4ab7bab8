"""DNS writes. Each change validates the zone's whole candidate record set (validators), writes,
bumps the SOA serial, records the audit event and stores a ``dns.zone.sync`` job in the same
transaction; the job converges the node's PowerDNS to the zone as it is then.

The zone's lifecycle (``zones``): any change of a live zone sets it ``pending`` and stores a push;
``delete`` sets it ``deleting`` and stores the job that withdraws it and then deletes the row. Both
are refused once the zone is being deleted."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agent.validate import dns as dns_rules
from apps.audit import services as audit
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.registry import Registry
from apps.common.rules import as_input
from apps.jobs.lifecycle import Lifecycle, Move
from apps.names import claims
from apps.nodes.models import Node, NodeStatus, with_role
from apps.tenancy.scoping import tenant_scope

from . import templates, validators, zonedata
from .models import Record, Zone, ZoneStatus

# Name servers a tenant's NEW zones get instead of ``MPANEL_DNS_NAMESERVERS``: callables tenant -> list of
# host names (apps/whitelabel registers the brand's vanity name servers). The first non-empty answer wins.
NAMESERVERS: Registry[Callable] = Registry("tenant name servers")

# The SOA settings a tenant may set (on create and update).
SETTABLE = ["default_ttl", "soa_mname", "soa_rname", "soa_refresh", "soa_retry", "soa_expire", "soa_minimum"]

zones: Lifecycle[Zone] = Lifecycle(
    model=Zone,
    kind="dns.zone",
    payload_key="zone",
    noun="zone",
    related=("node", "tenant"),
    moves={
        "change": Move(
            to=ZoneStatus.PENDING,
            not_from={ZoneStatus.DELETING},
            job="dns.zone.sync",
            refusal="This zone is being deleted.",
        ),
        "delete": Move(to=ZoneStatus.DELETING, not_from={ZoneStatus.DELETING}, refusal="This zone is being deleted."),
    },
)


def _recs(zone: Zone, rows) -> list[validators.Rec]:
    return [validators.Rec(r.name, r.type, r.ttl, r.content) for r in rows]


def _pick_node(node: Node | None) -> Node:
    if node is not None:
        if "dns" not in (node.roles or []):
            raise InvalidInput("This node does not have the dns role.", field="node")
        return node
    node = Node.objects.filter(with_role("dns"), status=NodeStatus.ACTIVE).order_by("hostname").first()
    if node is None:
        raise Conflict("No active node with the dns role: add one at /api/v1/ops/servers/.", code="no_dns_node")
    return node


def _changed(zone: Zone, actor) -> None:
    """Bump the serial, mark the zone pending and store the push. The zone as it will be pushed is
    first checked whole by the node's own rule (agent/validate/dns.py): what the node would refuse is
    a 400 here, and the transaction rolls back."""
    zone.serial = zonedata.next_serial(zone.serial, timezone.localdate())
    with as_input():
        dns_rules.zone_spec(zone_spec(zone))
    change = zones.moves["change"]
    if zone.status != ZoneStatus.DELETING:
        zone.status = change.to
    zone.save()
    zones.enqueue(zone, change.job, actor=actor)


def _live(zone: Zone) -> Zone:
    """``zone`` locked for a change, or a 409 once it is being deleted."""
    zone = zones.locked(zone)
    zones.check(zone, "change")
    return zone


@transaction.atomic
def zone_create(
    *,
    tenant,
    name: str,
    node: Node | None = None,
    template: str | None = None,
    template_vars: dict | None = None,
    nameservers: list[str] | None = None,
    zone_file: str | None = None,
    actor=None,
    **soa,
) -> Zone:
    name = validators.zone_name(name)
    origin = name + "."
    node = _pick_node(node)
    claims.claim(tenant, [name])  # nobody else's tree (apps/names/claims.py); locked until commit
    nameservers = [validators.zone_name(ns, field="nameservers") for ns in (nameservers or nameservers_for(tenant))]
    zone = Zone(
        tenant=tenant,
        name=name,
        node=node,
        soa_mname=validators.soa_field("soa_mname", soa.pop("soa_mname", None) or nameservers[0]),
        soa_rname=validators.soa_field("soa_rname", soa.pop("soa_rname", None) or settings.MPANEL_DNS_HOSTMASTER),
    )
    rows = [validators.record("@", "NS", None, ns + ".", origin) for ns in nameservers]
    if template:
        for row in templates.render(template, template_vars or {}, name):
            rows.append(validators.record(row["name"], row["type"], None, row["content"], origin))
    if zone_file:
        imported, timers = zonedata.parse_master_file(zone_file, origin)
        soa = {**timers, **soa}
        rows = imported if any(r.type == "NS" and r.name == "@" for r in imported) else rows + imported
    for key, value in soa.items():
        if key in SETTABLE and value is not None:
            setattr(zone, key, validators.soa_field(key, value))
    validators.check_zone(rows)
    try:
        with transaction.atomic():
            zone.save(force_insert=True)
    except IntegrityError as exc:
        raise InvalidInput("This tenant has a zone of this name already.", field="name") from exc
    Record.objects.bulk_create(
        [Record(tenant=tenant, zone=zone, name=r.name, type=r.type, ttl=r.ttl, content=r.content) for r in rows]
    )
    # The create's "after" names its records too (not fields of the zone row).
    audit.record(action="dns.zone.create", obj=zone, after={**audit.snapshot(zone),
                 "records": [r.label() for r in rows]}, **audit.by(actor))  # fmt: skip
    _changed(zone, actor)
    return zone


def nameservers_for(tenant) -> list[str]:
    """The apex NS a new zone of ``tenant`` gets: its own (vanity) name servers when it named some, else
    the platform's ``MPANEL_DNS_NAMESERVERS``."""
    for provide in NAMESERVERS:
        names = provide(tenant)
        if names:
            return list(names)
    return list(settings.MPANEL_DNS_NAMESERVERS)


def _host(name: str) -> str:
    return name.rstrip(".").lower()


def zones_set_nameservers(*, tenant, nameservers: list[str], ours=(), actor=None) -> list[Zone]:
    """Rewrite the apex NS records (and the SOA's primary, ``mname``) of ``tenant``'s zones to
    ``nameservers``, each zone in its own transaction with its audit event and its sync job (the
    normal zone push). A zone is left alone when it is being deleted, already has them, or lists at
    its apex a name server that is not one of ours (the platform's, ``nameservers`` or ``ours``,
    e.g. the vanity names applied before): the tenant chose those itself. Answers the zones changed."""
    names = [validators.zone_name(ns, field="nameservers") for ns in nameservers]
    if len(names) < 2 or len(set(names)) != len(names):
        raise InvalidInput("Give at least two different name servers.", field="nameservers")
    known = {_host(n) for n in (*settings.MPANEL_DNS_NAMESERVERS, *ours, *names)}
    changed = []
    ids = Zone.all_tenants.filter(tenant=tenant).exclude(status=ZoneStatus.DELETING).values_list("pk", flat=True)
    for zone_id in list(ids):
        with tenant_scope(tenant), transaction.atomic():
            zone = zones.locked(Zone.all_tenants.get(pk=zone_id))
            if zone.status == ZoneStatus.DELETING:
                continue
            apex = [r for r in zone.records.all() if r.type == "NS" and r.name == "@"]
            current = sorted(_host(r.content) for r in apex)
            if current == sorted(names) and _host(zone.soa_mname) == names[0]:
                continue
            if any(name not in known for name in current):
                continue
            rows = [validators.record("@", "NS", None, ns + ".", zone.origin) for ns in names]
            others = [r for r in zone.records.all() if not (r.type == "NS" and r.name == "@")]
            validators.check_zone(_recs(zone, others) + rows, field="nameservers")
            Record.all_tenants.filter(pk__in=[r.pk for r in apex]).delete()
            Record.all_tenants.bulk_create([Record(tenant=zone.tenant, zone=zone, name=r.name, type=r.type, ttl=r.ttl,
                                               content=r.content) for r in rows])  # fmt: skip
            before_mname = zone.soa_mname
            if _host(zone.soa_mname) in known:
                zone.soa_mname = validators.soa_field("soa_mname", names[0])
            audit.record(action="dns.zone.nameservers", obj=zone,
                         before={"nameservers": current, "soa_mname": before_mname},
                         after={"nameservers": names, "soa_mname": zone.soa_mname}, **audit.by(actor))  # fmt: skip
            _changed(zone, actor)
            changed.append(zone)
    return changed


@transaction.atomic
def zone_update(*, zone: Zone, data: dict, actor=None) -> Zone:
    zone = _live(zone)
    with audit.change(zone, "dns.zone.update", actor=actor):
        for key in SETTABLE:
            if key in data and data[key] is not None:
                setattr(zone, key, validators.soa_field(key, data[key]))
        _changed(zone, actor)
    return zone


def zone_delete(*, zone: Zone, actor=None) -> Zone:
    """The zone is withdrawn from the node by a job, which then deletes the row."""
    return zones.move(zone, "delete", actor=actor)


def _replace_check(zone: Zone, *, drop=None, add: list[validators.Rec] = (), field: str = "records") -> None:
    current = [r for r in zone.records.all() if r.pk != getattr(drop, "pk", None)]
    validators.check_zone(_recs(zone, current) + list(add), field=field)


@transaction.atomic
def record_create(*, zone: Zone, name: str, type: str, content: str, ttl: int | None = None, actor=None) -> Record:
    zone = _live(zone)
    rec = validators.record(name, type, ttl, content, zone.origin)
    _replace_check(zone, add=[rec], field="content")
    record = Record.objects.create(tenant=zone.tenant, zone=zone, name=rec.name, type=rec.type, ttl=rec.ttl,
                                   content=rec.content)  # fmt: skip
    audit.created(record, "dns.record.create", actor=actor)
    _changed(zone, actor)
    return record


@transaction.atomic
def record_update(*, record: Record, data: dict, actor=None) -> Record:
    zone = _live(record.zone)
    record = Record.objects.get(pk=record.pk)
    with audit.change(record, "dns.record.update", actor=actor):
        rec = validators.record(
            data.get("name", record.name),
            data.get("type", record.type),
            data.get("ttl", record.ttl),
            data.get("content", record.content),
            zone.origin,
        )
        _replace_check(zone, drop=record, add=[rec], field="content")
        record.name, record.type, record.ttl, record.content = rec.name, rec.type, rec.ttl, rec.content
        record.save()
    _changed(zone, actor)
    return record


@transaction.atomic
def record_delete(*, record: Record, actor=None) -> None:
    zone = _live(record.zone)
    audit.deleted(record, "dns.record.delete", actor=actor)
    record.delete()
    _changed(zone, actor)


@transaction.atomic
def zone_import(*, zone: Zone, zone_file: str, replace: bool = True, actor=None) -> Zone:
    """Records of an RFC 1035 master file; ``replace`` drops the zone's current records first.
    The SOA's timers are taken; its serial is not (ours only grows)."""
    zone = _live(zone)
    rows, timers = zonedata.parse_master_file(zone_file, zone.origin)
    keep = [] if replace else _recs(zone, zone.records.all())
    validators.check_zone(keep + rows, field="zone_file")
    with audit.change(zone, "dns.zone.import", actor=actor) as change:
        if replace:
            zone.records.all().delete()
        Record.objects.bulk_create(
            [Record(tenant=zone.tenant, zone=zone, name=r.name, type=r.type, ttl=r.ttl, content=r.content)
             for r in rows]
        )  # fmt: skip
        for key, value in timers.items():
            setattr(zone, key, value)
        _changed(zone, actor)
        # The records are other rows: the "after" names those imported, and whether they replaced the rest.
        change.mark(records=[r.label() for r in rows], replace=replace)
    return zone


def zone_spec(zone: Zone) -> dict:
    """The zone as the node wants it (agent/dns.py): rrsets with absolute names, the SOA included.
    Records of one name and type form one rrset; its TTL is the lowest of theirs."""
    origin = zone.origin
    rrsets: dict[tuple[str, str], dict] = {
        (origin, "SOA"): {"name": origin, "type": "SOA", "ttl": zone.default_ttl,
                          "records": [zonedata.soa_content(zone)]},
    }  # fmt: skip
    for r in zone.records.all():
        owner = zonedata.fqdn(r.name, origin)
        ttl = r.ttl if r.ttl is not None else zone.default_ttl
        rrset = rrsets.setdefault((owner, r.type), {"name": owner, "type": r.type, "ttl": ttl, "records": []})
        rrset["ttl"] = min(rrset["ttl"], ttl)
        rrset["records"].append(r.content)
    return {"name": origin, "serial": zone.serial, "rrsets": list(rrsets.values())}


def zone_export(zone: Zone) -> str:
    return zonedata.master_file(zone, zone.records.all())
