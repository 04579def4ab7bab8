"""How long each PHP version a site may run gets security fixes on a Debian node: the one table
Guardian's ``php_version_unsupported`` check (apps/security/checks.py) reads.

A version that a Debian release ships is supported as long as that release is (Debian LTS
included): Debian fixes its own PHP packages until then. A version no Debian release ships comes
from packages that follow PHP's own security support (php.net/supported-versions.php), so that
date applies. A version missing from the table is treated as unsupported: nobody vouches for it.

| version | supported until | why |
|---|---|---|
| 7.4 | 2026-08-31 | Debian 11 "bullseye" (LTS end) |
| 8.0 | 2023-11-26 | not in Debian; PHP's end of security support |
| 8.1 | 2025-12-31 | not in Debian; PHP's end of security support |
| 8.2 | 2028-06-30 | Debian 12 "bookworm" (LTS end) |
| 8.3 | 2027-12-31 | not in Debian; PHP's end of security support |
| 8.4 | 2030-06-30 | Debian 13 "trixie" (LTS end) |

Update it when Debian or PHP announce new dates; the check reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class PhpSupport:
    version: str
    until: date  # the last day with security fixes
    source: str


PHP_SUPPORT: dict[str, PhpSupport] = {
    s.version: s
    for s in (
        PhpSupport("7.4", date(2026, 8, 31), 'Debian 11 "bullseye" LTS'),
        PhpSupport("8.0", date(2023, 11, 26), "PHP's own security support (not in Debian)"),
        PhpSupport("8.1", date(2025, 12, 31), "PHP's own security support (not in Debian)"),
        PhpSupport("8.2", date(2028, 6, 30), 'Debian 12 "bookworm" LTS'),
        PhpSupport("8.3", date(2027, 12, 31), "PHP's own security support (not in Debian)"),
        PhpSupport("8.4", date(2030, 6, 30), 'Debian 13 "trixie" LTS'),
    )
}


def support_status(version: str, today: date, warn_days: int = 0) -> tuple[str, PhpSupport | None]:
    """``("supported" | "ending" | "ended" | "unknown", row)``. The last supported day itself is
    still supported; the day after is ``ended``; ``ending`` within ``warn_days`` before the end."""
    row = PHP_SUPPORT.get(version)
    if row is None:
        return "unknown", None
    if today > row.until:
        return "ended", row
    if (row.until - today).days < warn_days:
        return "ending", row
    return "supported", row
