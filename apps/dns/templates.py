"""Zone templates: records that fill a new zone. ``{ipv4}``, ``{ipv6}``, ``{mail_host}`` and
``{zone}`` are filled from the create request's ``template_vars``; a record whose variable is not
given is left out (a website template without ``ipv6`` gets no AAAA)."""

from __future__ import annotations

import string

from apps.common.exceptions import InvalidInput

TEMPLATES: dict[str, list[dict]] = {
    "website": [
        {"name": "@", "type": "A", "content": "{ipv4}"},
        {"name": "@", "type": "AAAA", "content": "{ipv6}"},
        {"name": "www", "type": "CNAME", "content": "{zone}."},
    ],
    "mail": [
        {"name": "@", "type": "MX", "content": "10 {mail_host}."},
        {"name": "@", "type": "TXT", "content": "v=spf1 mx -all"},
        {"name": "_dmarc", "type": "TXT", "content": "v=DMARC1; p=quarantine"},
    ],
}
TEMPLATES["website-mail"] = TEMPLATES["website"] + TEMPLATES["mail"]


def render(template: str, variables: dict, zone: str) -> list[dict]:
    if template not in TEMPLATES:
        raise InvalidInput(f"Unknown template; choose one of {', '.join(sorted(TEMPLATES))}.", field="template")
    values = {k: str(v) for k, v in (variables or {}).items() if v not in (None, "")}
    values["zone"] = zone
    out = []
    for row in TEMPLATES[template]:
        needed = {f for _, f, _, _ in string.Formatter().parse(row["content"]) if f}
        if needed - values.keys():
            continue
        out.append({**row, "content": row["content"].format(**values)})
    return out
