"""Host and domain names as every daemon here reads them: ASCII (IDNA A-labels; the panel turns
Unicode names into those before it checks), letters, digits and hyphens, lower case."""

from __future__ import annotations

import re

from . import Invalid, text

LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# DNS owner names also take "_" (_dmarc, _sip._tcp, selector._domainkey).
SERVICE_LABEL_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
TLD_RE = re.compile(r"^([a-z][a-z0-9-]{0,61}[a-z0-9]|xn--[a-z0-9-]{1,59})$")


def domain(value, *, field: str = "name", underscore: bool = False, wildcard: bool = False,
           min_labels: int = 2) -> str:  # fmt: skip
    """A fully qualified name without the trailing dot: ``example.com``. ``underscore``: labels may
    hold "_" (DNS names other than host names); ``wildcard``: ``*.`` may stand first."""
    name = text(value, field=field, what="A name").strip().lower()
    if name.endswith("."):
        name = name[:-1]
    star = wildcard and name.startswith("*.")
    rest = name[2:] if star else name
    labels = rest.split(".")
    rule = SERVICE_LABEL_RE if underscore else LABEL_RE
    if not rest or len(name) > 253 or len(labels) < min_labels:
        raise Invalid(f"Not a valid domain name: {value!r} (a name like example.com).", field=field)
    for label in labels:
        if not rule.match(label):
            allowed = "letters, digits, '-'" + (" and '_'" if underscore else "")
            raise Invalid(f"Not a valid domain name: {value!r} (each label: {allowed}, at most 63).", field=field)
    if not TLD_RE.match(labels[-1]):
        raise Invalid(f"Not a valid domain name: {value!r} (its last label is not a top-level domain).", field=field)
    return name
