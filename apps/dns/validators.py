"""DNS input rules, checked with dnspython: names, record syntax, zone-wide rules, SOA settings.

Pure functions over plain values (no database): the services call them on the zone's whole
candidate record set before writing anything, so a bad record leaves the zone unchanged. Every
rule ends in the node's own (agent/validate/dns.py), so what the node would refuse is a 400 here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass

from agent.validate import dns as dns_rules
from agent.validate import text as rules_text
from apps.common.exceptions import InvalidInput
from apps.common.rules import as_input, check

from .models import RECORD_TYPES

TXT_CHUNK = 255  # one <character-string> holds at most 255 bytes (RFC 1035 §3.3)
NAME_TARGET = {"CNAME", "NS", "PTR", "MX", "SRV"}  # the last field is a host name


@dataclass
class Rec:
    """A record as the rules see it: relative name, type, ttl (or None), canonical content."""

    name: str
    type: str
    ttl: int | None
    content: str

    def label(self) -> str:
        return f"{self.name} {self.type} {self.content}"


def zone_name(value: str, field: str = "name") -> str:
    """The IDNA (A-label) form of a zone name, lower case, without the trailing dot; then the
    node's rule for names (agent/validate/dns.py) decides."""
    text = check(dns_rules.typed_name, str(value or ""), field=field).strip().rstrip(".")
    if not text:
        raise InvalidInput("A zone name is required.", field=field)
    try:
        name = dns.name.from_unicode(text)
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise InvalidInput(f"Not a valid domain name: {exc}", field=field) from exc
    if len(name.labels) < 3:  # two labels and the root
        raise InvalidInput("A zone needs at least two labels (example.com).", field=field)
    for label in name.labels[:-1]:
        if label.startswith(b"-") or label.endswith(b"-"):
            raise InvalidInput("A label cannot start or end with a hyphen.", field=field)
    return check(dns_rules.zone_name, name.to_text().rstrip(".").lower(), field=field)


def record_name(value: str, origin: str) -> str:
    """A record's owner name relative to the zone: ``@``, ``www``, ``_sip._tcp``. An absolute name
    (trailing dot) must be inside the zone; without a dot it is relative, as in a master file."""
    text = check(dns_rules.typed_name, str(value or "@"), field="name").strip() or "@"
    zone = dns.name.from_text(origin)
    try:
        name = dns.name.from_unicode(text, origin=zone) if text != "@" else zone
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise InvalidInput(f"Not a valid record name: {exc}", field="name") from exc
    if not name.is_subdomain(zone):
        raise InvalidInput(f"{name} is outside the zone {origin}.", field="name")
    check(dns_rules.owner, name.to_text(), zone=origin.lower(), field="name")
    return name.relativize(zone).to_text().lower()


def _txt(content: str) -> str:
    """Plain text becomes quoted strings of at most 255 bytes; quoted input is taken as written."""
    text = content.strip()
    if text.startswith('"'):
        return text
    chunks, current, size = [], [], 0
    for char in content:
        width = len(char.encode())
        if size + width > TXT_CHUNK:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    chunks.append("".join(current))
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def rdata(rtype: str, content: str, origin: str) -> dns.rdata.Rdata:
    rtype = str(rtype or "").upper()
    if rtype not in RECORD_TYPES:
        raise InvalidInput(f"Type must be one of {', '.join(RECORD_TYPES)}.", field="type")
    raw = str(content or "")
    if rtype == "TXT" and not raw.strip().startswith('"'):
        check(rules_text, raw, field="content", what="TXT data", max_length=65535)  # quoted by _txt below
    else:
        # What is typed is read as one line of a master file: a comment, a line join or a second
        # line would be dropped by the reader without a word, so they are refused before it reads.
        check(dns_rules.presentation, raw, field="content")
    text = _txt(content) if rtype == "TXT" else str(content or "").strip()
    if not text:
        raise InvalidInput("Content is required.", field="content")
    try:
        rd = dns.rdata.from_text(dns.rdataclass.IN, rtype, text, origin=dns.name.from_text(origin), relativize=False)
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise InvalidInput(f"Not valid {rtype} data: {exc}", field="content") from exc
    if rtype in NAME_TARGET:
        target = text.split()[-1].rstrip(".")  # as written: "10 192.0.2.1" would become a name in the zone
        if _is_ip(target):
            raise InvalidInput(f"The {rtype} target must be a host name, not an address ({target}).", field="content")
    return rd


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def canonical(rtype: str, content: str, origin: str) -> str:
    """The content as stored and served: dnspython's presentation format with absolute names, as
    the node's rule for its type takes it."""
    text = rdata(rtype, content, origin).to_text(origin=None, relativize=False)
    return check(lambda value, field: dns_rules.content(str(rtype).upper(), value, field), text, field="content")


def record(name: str, rtype: str, ttl, content: str, origin: str) -> Rec:
    if ttl is not None:
        ttl = check(dns_rules.ttl, ttl, field="ttl")
    rtype = str(rtype or "").upper()
    return Rec(record_name(name, origin), rtype, ttl, canonical(rtype, content, origin))


def check_zone(records: list[Rec], *, field: str = "records") -> None:
    """Zone-wide rules; the first broken one is a 400 naming the record at fault."""
    seen: set[tuple[str, str, str]] = set()
    types_at: dict[str, set[str]] = {}
    for rec in records:
        key = (rec.name, rec.type, rec.content)
        if key in seen:
            raise InvalidInput(f"Duplicate record: {rec.label()}.", field=field, code="duplicate")
        seen.add(key)
        types_at.setdefault(rec.name, set()).add(rec.type)
    for rec in records:
        if rec.type != "CNAME":
            continue
        if rec.name == "@":
            raise InvalidInput(f"No CNAME at the zone apex: {rec.label()}.", field=field)
        others = types_at[rec.name] - {"CNAME"}
        if others:
            raise InvalidInput(
                f"A CNAME cannot sit beside other records ({', '.join(sorted(others))}) at the same name: "
                f"{rec.label()}.",
                field=field,
            )
        if sum(1 for r in records if r.name == rec.name and r.type == "CNAME") > 1:
            raise InvalidInput(f"Only one CNAME per name: {rec.label()}.", field=field)


def soa_field(key: str, value, *, field: str | None = None):
    """One of the zone's SOA settings by the node's rules: names as zone names, timers 31-bit."""
    field = field or key
    if key in ("soa_mname", "soa_rname"):
        return zone_name(value, field=field)
    with as_input(field):
        if key == "default_ttl":
            return dns_rules.ttl(value, field)
        return dns_rules.number(value, 0, dns_rules.TTL_MAX, field, key.removeprefix("soa_").capitalize())
