"""Zones, records and the SOA as a node writes them: a PowerDNS rrset's content, or one line of a
BIND master file (``name ttl IN type content``).

Content is presentation format with absolute names, on one line. Outside a quoted string a ``;``
starts a comment, ``(``/``)`` join lines, ``$`` starts a directive and whitespace separates
fields, so a value that held any of those would say something else than what was stored: each
type's content is checked field by field, and text only ever stands inside ``"…"``.
"""

from __future__ import annotations

import ipaddress
import re

from . import CONTROL_RE, Invalid
from .names import domain as _domain

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "NS", "PTR")
TTL_MAX = 2_147_483_647  # RFC 2181 §8: TTLs (and the SOA's timers) are 31-bit
SERIAL_MAX = 4_294_967_295
# A quoted string: printable ASCII except a bare " or \, or a \-escape (\" \\ \DDD \X).
QUOTED_RE = re.compile(r'"(?:[ !#-\[\]-~]|\\[0-9]{3}|\\[ -~])*"')
TXT_RE = re.compile(rf"^{QUOTED_RE.pattern}(?: +{QUOTED_RE.pattern})*$")
CAA_RE = re.compile(rf"^(\d{{1,3}}) ([A-Za-z0-9]{{1,15}}) ({QUOTED_RE.pattern})$")
LABEL_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def zone_name(value, field: str = "name") -> str:
    """A zone's name without the trailing dot: no wildcard, no escapes, at least two labels."""
    return _domain(value, field=field, underscore=True)


def typed_name(value, field: str = "name") -> str:
    """A name as a person types it, before it is read: no escapes (``\\;``, ``\\032``), which would
    make a name of characters no host name holds, and no control characters."""
    if not isinstance(value, str) or "\\" in value or CONTROL_RE.search(value):
        raise Invalid(f"Not a valid name: {value!r} (no '\\' escapes or control characters).", field=field)
    return value


def host(value, field: str = "content", *, root: bool = False) -> str:
    """An absolute name in record data (``mail.example.com.``); ``root``: ``.`` too (a null MX or SRV)."""
    if not isinstance(value, str) or CONTROL_RE.search(value):
        raise Invalid(f"Not a valid name: {value!r}.", field=field)
    if root and value == ".":
        return value
    if not value.endswith("."):
        raise Invalid(f"A name in record data must be absolute (end with '.'): {value!r}.", field=field)
    name = value[:-1].lower()
    labels = name.split(".")
    if len(value) > 254 or not all(LABEL_RE.match(label) for label in labels):
        raise Invalid(f"Not a valid name: {value!r} (labels of letters, digits, '-' and '_').", field=field)
    return value


def owner(value, zone: str, field: str = "name") -> str:
    """An rrset's absolute owner name, inside ``zone`` (both with the trailing dot); ``*`` may be the
    first label."""
    text = str(value or "") if isinstance(value, str) else ""
    name = text.lower()
    if not name.endswith(zone) or (name != zone and not name.endswith("." + zone)):
        raise Invalid(f"{value!r} is outside the zone {zone}.", field=field)
    host(name[2:] if name.startswith("*.") else name, field)
    return name


def ttl(value, field: str = "ttl") -> int:
    return number(value, 0, TTL_MAX, field, "A TTL")


def number(value, low: int, high: int, field: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.isdigit() and value.isascii():
            value = int(value)
        else:
            raise Invalid(f"{what} must be a whole number.", field=field)
    if not low <= value <= high:
        raise Invalid(f"{what} must be between {low} and {high}, not {value}.", field=field)
    return value


def soa(content, field: str = "soa") -> str:
    """``mname. rname. serial refresh retry expire minimum``."""
    parts = content.split(" ") if isinstance(content, str) else []
    if len(parts) != 7:
        raise Invalid(f"An SOA is 'mname. rname. serial refresh retry expire minimum': {content!r}.", field=field)
    host(parts[0], "soa_mname")
    host(parts[1], "soa_rname")
    number(parts[2], 0, SERIAL_MAX, "serial", "The serial")
    for name, part in zip(("soa_refresh", "soa_retry", "soa_expire", "soa_minimum"), parts[3:], strict=True):
        number(part, 0, TTL_MAX, name, name.removeprefix("soa_").capitalize())
    return content


def presentation(value, field: str = "content") -> str:
    """Record data as a person types it (names may still be relative): one line, and nothing that
    would make a zone file reader stop early or read on (``;`` comments, ``(``/``)`` line joins, a
    ``$`` directive) outside a quoted string. A reader that stops early would store less than was
    written without a word; this refuses it instead."""
    if not isinstance(value, str) or CONTROL_RE.search(value):
        raise Invalid(f"Record data cannot hold control characters or line breaks: {value!r}.", field=field)
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', value)
    if '"' in outside.replace('""', ""):
        raise Invalid(f"Record data has an unclosed quote: {value!r}.", field=field)
    for char, what in ((";", "a comment (';')"), ("(", "'('"), (")", "')'"), ("\\", "an escape ('\\')")):
        if char in outside:
            raise Invalid(f"Record data cannot hold {what} outside quotes: {value!r}.", field=field)
    if outside.lstrip().startswith("$"):
        raise Invalid(f"Record data cannot start with a directive ('$'): {value!r}.", field=field)
    return value


def content(rtype, value, field: str = "content") -> str:
    """One record's data as the node sends it on, checked field by field for its type."""
    if not isinstance(value, str) or not value or CONTROL_RE.search(value):
        raise Invalid(f"{rtype} data cannot be empty or hold control characters or line breaks: {value!r}.",
                      field=field)  # fmt: skip
    if rtype not in ("TXT", "CAA") and value != " ".join(value.split()):
        raise Invalid(f"{rtype} data has stray whitespace: {value!r}.", field=field)
    parts = value.split(" ")
    try:
        if rtype == "A":
            if len(parts) != 1 or not isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address):
                raise ValueError
        elif rtype == "AAAA":
            if len(parts) != 1 or not isinstance(ipaddress.ip_address(value), ipaddress.IPv6Address):
                raise ValueError
        elif rtype in ("CNAME", "NS", "PTR"):
            if len(parts) != 1:
                raise ValueError
            host(value, field)
        elif rtype == "MX":
            if len(parts) != 2:
                raise ValueError
            number(parts[0], 0, 65535, field, "An MX preference")
            host(parts[1], field, root=True)
        elif rtype == "SRV":
            if len(parts) != 4:
                raise ValueError
            for part, what in zip(parts[:3], ("An SRV priority", "An SRV weight", "An SRV port"), strict=True):
                number(part, 0, 65535, field, what)
            host(parts[3], field, root=True)
        elif rtype == "TXT":
            if not TXT_RE.match(value):
                raise ValueError
        elif rtype == "CAA":
            match = CAA_RE.match(value)
            if not match or int(match.group(1)) > 255:
                raise ValueError
        else:
            raise Invalid(f"Type must be one of {', '.join(RECORD_TYPES)}, not {rtype!r}.", field="type")
    except ValueError as exc:
        if isinstance(exc, Invalid):
            raise
        raise Invalid(f"Not valid {rtype} data as a node serves it: {value!r}.", field=field) from None
    return value


def zone_spec(spec) -> tuple[str, list[dict]]:
    """A zone as the panel pushes it: ``(origin, rrsets)``, every rrset checked; the SOA exactly once
    at the apex. The first fault is an ``Invalid`` naming the rrset."""
    if not isinstance(spec, dict):
        raise Invalid("A zone spec is an object.", field="zone")
    origin = zone_name(spec.get("name"), "name") + "."
    rrsets, seen, soas = [], set(), 0
    for r in spec.get("rrsets") or []:
        if not isinstance(r, dict) or not isinstance(r.get("records"), list) or not r["records"]:
            raise Invalid(f"Bad rrset in {origin}: {r!r}.", field="rrsets")
        rtype = str(r.get("type") or "").upper()
        name = owner(r.get("name"), origin)
        label = f"{name} {rtype}"
        try:
            if rtype == "SOA":
                soas += 1
                if name != origin or len(r["records"]) != 1:
                    raise Invalid("The SOA stands once, at the apex.", field="soa")
                records = [soa(r["records"][0])]
            elif rtype in RECORD_TYPES:
                records = [content(rtype, c) for c in r["records"]]
            else:
                raise Invalid(f"Type must be one of {', '.join(RECORD_TYPES)}, not {rtype!r}.", field="type")
            rrset_ttl = ttl(r.get("ttl"))
        except Invalid as exc:
            raise Invalid(f"{label}: {exc.message}", field=exc.field) from None
        if (name, rtype) in seen:
            raise Invalid(f"{label} is given twice.", field="rrsets")
        seen.add((name, rtype))
        rrsets.append({"name": name, "type": rtype, "ttl": rrset_ttl, "records": records})
    if soas != 1:
        raise Invalid(f"The zone {origin} needs exactly one SOA.", field="soa")
    return origin, rrsets
