"""The zone as text (RFC 1035): master files read and written, the SOA's content, serials.

Reading a master file checks every record by the input rules (validators.py), so an import is held
to what the API takes one record at a time.
"""

from __future__ import annotations

from datetime import date

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.zonefile

from apps.common.exceptions import InvalidInput

from .models import RECORD_TYPES
from .validators import Rec, record, soa_field


def next_serial(current: int, today: date) -> int:
    """YYYYMMDDnn: the first change of a day is nn=01, each further one adds 1 (past 99 it runs into
    the next day's numbers, as RFC 1912 allows: serials only need to grow)."""
    return max(int(current or 0) + 1, int(today.strftime("%Y%m%d")) * 100 + 1)


def fqdn(name: str, origin: str) -> str:
    return origin if name == "@" else f"{name}.{origin}"


def soa_content(zone) -> str:
    return (
        f"{_abs(zone.soa_mname)} {_abs(zone.soa_rname)} {zone.serial} "
        f"{zone.soa_refresh} {zone.soa_retry} {zone.soa_expire} {zone.soa_minimum}"
    )


def _abs(name: str) -> str:
    return name if name.endswith(".") else name + "."


def master_file(zone, records) -> str:
    """RFC 1035 master format: $ORIGIN, $TTL, the SOA, then every record."""
    lines = [f"$ORIGIN {zone.origin}", f"$TTL {zone.default_ttl}"]
    lines.append(f"@\t{zone.default_ttl}\tIN\tSOA\t{soa_content(zone)}")
    for r in records:
        lines.append(f"{r.name}\t{r.ttl if r.ttl is not None else zone.default_ttl}\tIN\t{r.type}\t{r.content}")
    return "\n".join(lines) + "\n"


class _Collect:
    """The smallest transaction dnspython's master-file reader writes into: it keeps every record
    in order and leaves the zone rules (CNAME beside data) to check_zone, which names the record."""

    def __init__(self, origin: str):
        self.origin = dns.name.from_text(origin)
        self.manager = dns.zonefile.RRSetsReaderManager(self.origin, False, dns.rdataclass.IN)
        self.rows: list[tuple] = []

    def check_put_rdataset(self, check) -> None:
        pass

    def _set_origin(self, origin) -> None:
        # Names after a $ORIGIN outside the zone would all be dropped by the reader, silently.
        if not origin.is_subdomain(self.origin):
            raise dns.exception.SyntaxError(f"$ORIGIN {origin} is outside the zone {self.origin}")

    def add(self, name, ttl, rd) -> None:
        self.rows.append((name, ttl, rd))


class _Reader(dns.zonefile.Reader):
    """dnspython's reader skips a record whose name is outside the zone without a word (the only
    place it eats a line): here that is an error, which the reader reports with its line number."""

    def _eat_line(self):
        raise dns.exception.SyntaxError(f"{self.last_name} is outside the zone {self.zone_origin}")


def _read_master_file(text: str, origin: str) -> list[tuple]:
    """(name, ttl, rdata) of a master file as written: $ORIGIN and $TTL are followed, $INCLUDE and
    $GENERATE refused."""
    txn = _Collect(origin)
    tokenizer = dns.tokenizer.Tokenizer(text, "<zone file>")
    _Reader(tokenizer, dns.rdataclass.IN, txn, allow_directives={"$ORIGIN", "$TTL"}).read()
    return txn.rows


def parse_master_file(text: str, origin: str) -> tuple[list[Rec], dict]:
    """Records of a master file (SOA apart) and the SOA's timers, if any."""
    try:
        rows = _read_master_file(text, origin)
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise InvalidInput(f"Not a valid zone file: {exc}", field="zone_file") from exc
    soa: dict = {}
    out: list[Rec] = []
    zone = dns.name.from_text(origin)
    for name, ttl, rd in rows:
        rtype = dns.rdatatype.to_text(rd.rdtype)
        if not name.is_subdomain(zone):
            raise InvalidInput(f"{name} is outside the zone {origin}.", field="zone_file")
        relative = name.relativize(zone).to_text().lower()
        if rtype == "SOA":
            if relative == "@":
                soa = {"soa_refresh": rd.refresh, "soa_retry": rd.retry, "soa_expire": rd.expire,
                       "soa_minimum": rd.minimum}  # fmt: skip
                soa = {key: soa_field(key, value, field="zone_file") for key, value in soa.items()}
            continue
        if rtype not in RECORD_TYPES:
            raise InvalidInput(f"Unsupported record type {rtype} at {relative}.", field="zone_file")
        try:
            out.append(record(relative, rtype, ttl, rd.to_text(origin=None, relativize=False), origin))
        except InvalidInput as exc:
            raise InvalidInput(f"{relative} {rtype}: {exc.message}", field="zone_file") from exc
    return out, soa
