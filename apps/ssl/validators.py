"""Input rules of the SSL module: hostnames for a certificate, and an uploaded bundle (checked by
the node's own rules, ``agent/pem.py``, so what the API accepts the node installs)."""

from __future__ import annotations

from agent import pem
from apps.common.exceptions import InvalidInput
from apps.websites import validators as website_rules

MAX_NAMES = 100


def names(values) -> list[str]:
    """1-100 distinct hostnames (IDNA to ASCII, lower case); ``*.`` allowed as a whole first label."""
    if not isinstance(values, list) or not 0 < len(values) <= MAX_NAMES:
        raise InvalidInput(f"Between 1 and {MAX_NAMES} hostnames.", field="names")
    out: list[str] = []
    for value in values:
        name = website_rules.hostname(value, field="names", allow_wildcard=True)
        if name in out:
            raise InvalidInput(f"{name} is named twice.", field="names")
        out.append(name)
    return out


def upload(certificate: str, chain: str, private_key: str, *, names: list[str] | None = None) -> dict:
    """Key matches, chain orders and verifies, within its dates, every name of the site covered;
    each refusal a 400 naming its field. Answers the leaf's facts (never the key)."""
    try:
        return pem.check_bundle(certificate, chain, private_key, names=names)
    except pem.BadBundle as exc:
        raise InvalidInput(exc.message, field=exc.field) from None
