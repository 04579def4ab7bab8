"""Guardian's hosting checks: what gets a hosting customer hacked, found on the nodes and in our data.

Each is one ``@check`` registration (see ``apps/security/guardian.py``); a check that asks a node
yields ``Unknown`` for the resources whose node did not answer, so a node outage never "resolves"
a finding. Extension points, for modules that do not exist yet: "apps not updated" and
"certificates near expiry" are each one more ``@check`` function here (or in their module).
"""

from __future__ import annotations

import ipaddress
import logging
import shlex
from datetime import timedelta

import dns.exception
import dns.resolver
from django.conf import settings
from django.utils import timezone

from apps.common.crypto import UndecryptableSecret
from apps.databases import services as database_services
from apps.databases.models import DatabaseServer, ServerStatus
from apps.dns.lookups import resolver
from apps.dns.models import Record, Zone, ZoneStatus
from apps.mail.models import MailDomain
from apps.nodes.drivers import NodeError, driver_for
from apps.nodes.models import Node, NodeStatus
from apps.websites.models import Website, WebsiteStatus
from apps.websites.php_support import support_status

from .guardian import Hit, Unknown, check

log = logging.getLogger(__name__)

LIVE_SITES = (WebsiteStatus.ACTIVE, WebsiteStatus.SUSPENDED, WebsiteStatus.ERROR)


# --- websites -------------------------------------------------------------------------------------


@check(
    "world_writable_files",
    severity="high",
    title="World-writable files or folders in a website",
    remediation="Anyone with an account on the server can change these (plant a web shell, deface the "
    "site): remove the 'others may write' bit, e.g. mode 0644 for files and 0755 for folders "
    "(the file manager's chmod).",
)
def world_writable_files(tenant):
    sites = Website.objects.filter(tenant=tenant, status__in=LIVE_SITES).select_related("node").order_by("pk")
    for site in sites:
        try:
            walk = driver_for(site.node).site_world_writable(
                site.site_id,
                max_entries=settings.MPANEL_GUARDIAN_WALK_MAX_ENTRIES,
                max_seconds=settings.MPANEL_GUARDIAN_WALK_SECONDS,
            )
        except NodeError as exc:
            log.info("guardian: cannot walk site %s: %s", site.pk, exc.message)
            yield Unknown("websites.website", str(site.pk))
            continue
        if walk.get("count"):
            paths = [p["path"] for p in walk["paths"]]
            yield Hit(
                "websites.website",
                str(site.pk),
                site.primary_domain,
                {
                    "paths": walk["paths"],
                    "count": walk["count"],
                    "complete": walk["complete"],
                    "scanned": walk["scanned"],
                },
                remediation=f"Remove the 'others may write' bit from: {', '.join(paths[:10])}"
                + (f" and {walk['count'] - 10} more" if walk["count"] > 10 else "")
                + " (e.g. mode 0644 for files and 0755 for folders, with the file manager's chmod).",
            )
        elif not walk.get("complete"):
            yield Unknown("websites.website", str(site.pk))  # nothing seen in the part it could walk


@check(
    "php_version_unsupported",
    severity="high",
    title="Website on a PHP version without security support",
    remediation="Move the site to a supported PHP version (PATCH the website's php_version) after "
    "checking that its code runs on it.",
)
def php_version_unsupported(tenant):
    today = timezone.localdate()
    sites = Website.objects.filter(tenant=tenant, status__in=LIVE_SITES).exclude(php_version="").order_by("pk")
    for site in sites:
        status, row = support_status(site.php_version, today, settings.MPANEL_GUARDIAN_PHP_WARN_DAYS)
        if status == "supported":
            continue
        evidence = {"php_version": site.php_version, "status": status}
        if row is not None:
            evidence |= {"supported_until": row.until.isoformat(), "source": row.source}
        yield Hit(
            "websites.website",
            str(site.pk),
            site.primary_domain,
            evidence,
            severity="low" if status == "ending" else None,
        )


# --- databases ------------------------------------------------------------------------------------


def _beyond_loopback(address: str) -> bool:
    if address in ("localhost",):
        return False
    try:
        return not ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return True  # "*", "0.0.0.0"-like wildcards and host names: assume reachable from outside


@check(
    "database_exposed_without_tls",
    severity="high",
    title="Database server listening beyond loopback without TLS",
    remediation="Passwords and data cross the network in clear. Either listen on loopback only "
    "(PostgreSQL listen_addresses = 'localhost'; MariaDB bind-address = 127.0.0.1) or turn TLS on "
    "(PostgreSQL ssl = on with ssl_cert_file/ssl_key_file; MariaDB ssl_cert/ssl_key) and reload.",
)
def database_exposed_without_tls(tenant):
    servers = DatabaseServer.objects.filter(tenant=tenant).exclude(status=ServerStatus.PENDING)
    for server in servers.select_related("node").order_by("pk"):
        try:
            facts = driver_for(server.node).db_security(database_services.server_spec(server))
        except (NodeError, UndecryptableSecret):
            yield Unknown("databases.databaseserver", str(server.pk))
            continue
        exposed = [a for a in facts.get("listen", []) if _beyond_loopback(a)]
        if exposed and not facts.get("ssl"):
            yield Hit(
                "databases.databaseserver",
                str(server.pk),
                f"{server.engine} {server.host}:{server.port}",
                {"engine": server.engine, "listen": facts["listen"], "ssl": False},
            )


# --- DNS and mail ---------------------------------------------------------------------------------


def _our_zone(zones: list[Zone], name: str) -> tuple[Zone, str] | None:
    """The tenant's zone that holds ``name`` (the longest match), and ``name`` relative to it."""
    holding = [z for z in zones if name == z.name or name.endswith("." + z.name)]
    best = max(holding, key=lambda z: len(z.name), default=None)
    if best is None:
        return None
    return best, ("@" if name == best.name else name[: -len(best.name) - 1])


class _Lookup:
    """TXT records of a name: from our own zone data when the zone is ours, else from DNS
    (``MPANEL_DNS_RESOLVERS``). ``None`` when DNS could not answer (timeout, no server)."""

    def __init__(self, tenant):
        self.zones = list(Zone.objects.filter(tenant=tenant).exclude(status=ZoneStatus.DELETING))
        self.cache: dict[str, list[str] | None] = {}

    def txt(self, name: str) -> list[str] | None:
        if name not in self.cache:
            self.cache[name] = self._txt(name)
        return self.cache[name]

    def _txt(self, name: str) -> list[str] | None:
        ours = _our_zone(self.zones, name)
        if ours is not None:
            zone, relative = ours
            rows = Record.objects.filter(zone=zone, name=relative, type="TXT").values_list("content", flat=True)
            return [_unquote(c) for c in rows]
        try:
            answer = resolver().resolve(name, "TXT", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration):
            return None
        if answer.rrset is None:
            return []
        return [b"".join(rd.strings).decode(errors="replace") for rd in answer.rrset]


def _unquote(content: str) -> str:
    """A TXT rdata as stored (``"v=spf1 " "mx -all"``) → its text (the strings joined)."""
    try:
        return "".join(shlex.split(content))
    except ValueError:
        return content.strip('"')


def _mail_record_check(kind: str, tenant):
    lookup = _Lookup(tenant)
    for domain in MailDomain.objects.filter(tenant=tenant).order_by("name"):
        name, prefix = {
            "spf": (domain.name, "v=spf1"),
            "dkim": (f"{domain.dkim_selector}._domainkey.{domain.name}", "v=DKIM1"),
            "dmarc": (f"_dmarc.{domain.name}", "v=DMARC1"),
        }[kind]
        values = lookup.txt(name)
        if values is None:
            yield Unknown("mail.maildomain", str(domain.pk))
            continue
        if not any(v.strip().lower().startswith(prefix.lower()) for v in values):
            yield Hit(
                "mail.maildomain",
                str(domain.pk),
                domain.name,
                {"record": name, "expected": prefix, "source": "zone" if _our_zone(lookup.zones, name) else "dns"},
                remediation=_MAIL_FIX[kind].format(name=name, domain=domain),
            )


_MAIL_FIX = {
    "spf": 'Publish a TXT record at {name}: "v=spf1 mx -all" (add the other servers that send its mail).',
    "dkim": "Publish the DKIM key as a TXT record at {name}: the mail domain's `dkim` value "
    "(GET /hosting/email/domains/{domain.pk}/).",
    "dmarc": 'Publish a TXT record at {name}: "v=DMARC1; p=quarantine" (p=reject once reports look clean).',
}


@check(
    "mail_without_spf",
    severity="medium",
    title="Mail domain without SPF",
    remediation="Publish an SPF TXT record naming the servers that send its mail.",
)
def mail_without_spf(tenant):
    yield from _mail_record_check("spf", tenant)


@check(
    "mail_without_dkim",
    severity="medium",
    title="Mail domain without a published DKIM key",
    remediation="Publish the domain's DKIM key as a TXT record at <selector>._domainkey.<domain>.",
)
def mail_without_dkim(tenant):
    yield from _mail_record_check("dkim", tenant)


@check(
    "mail_without_dmarc",
    severity="medium",
    title="Mail domain without DMARC",
    remediation="Publish a DMARC TXT record at _dmarc.<domain>, e.g. v=DMARC1; p=quarantine.",
)
def mail_without_dmarc(tenant):
    yield from _mail_record_check("dmarc", tenant)


@check(
    "zone_without_caa",
    severity="low",
    title="DNS zone without CAA records",
    remediation="Any certificate authority may issue certificates for this domain. Add a CAA record at "
    'the apex naming the one you use, e.g. @ CAA 0 issue "letsencrypt.org".',
)
def zone_without_caa(tenant):
    zones = Zone.objects.filter(tenant=tenant).exclude(status=ZoneStatus.DELETING)
    with_caa = set(Record.objects.filter(zone__in=zones, name="@", type="CAA").values_list("zone_id", flat=True))
    for zone in zones.order_by("name"):
        if zone.pk not in with_caa:
            yield Hit("dns.zone", str(zone.pk), zone.name, {"zone": zone.name})


# --- nodes ----------------------------------------------------------------------------------------


@check(
    "node_heartbeat_stale",
    severity="high",
    title="Node whose heartbeats stopped",
    remediation="The panel cannot reach this node's agent, so changes and checks do not reach it: "
    "check that the machine is up, that the agent runs and that the panel can reach its address "
    "(or put the node in maintenance while you work on it).",
)
def node_heartbeat_stale(tenant):
    cutoff = timezone.now() - timedelta(seconds=settings.MPANEL_NODE_OFFLINE_AFTER)
    nodes = Node.objects.filter(tenant=tenant).exclude(status=NodeStatus.MAINTENANCE).order_by("hostname")
    for node in nodes:
        last = node.last_heartbeat_at
        stale = node.status == NodeStatus.OFFLINE or (last < cutoff if last else node.created_at < cutoff)
        if stale:
            yield Hit(
                "nodes.node",
                str(node.pk),
                node.hostname,
                {"status": node.status, "last_heartbeat_at": last.isoformat() if last else None},
            )
