"""Mail input rules: every value the mail node's daemons read is checked here by the very rule the
node applies again (``agent/validate/mail.py`` for Postfix maps and Dovecot's passwd-file,
``agent/validate/sieve.py`` for autoresponders); a refusal is a 400 naming the field."""

from __future__ import annotations

from agent.validate import mail as mail_rules
from agent.validate import sieve as sieve_rules
from apps.common.exceptions import InvalidInput
from apps.common.rules import check
from apps.dns import validators as dns_validators

from .models import Autoresponder


def clean_local_part(value: str, field: str = "local_part") -> str:
    """A hosted local part, by the rule the node applies to its map keys (agent/validate/mail.py)."""
    return check(mail_rules.local_part, value, field=field)


def mail_domain_name(value: str, field: str = "name") -> str:
    """A mail domain: Unicode names become their IDNA A-labels, then the node's rule decides."""
    try:
        name = dns_validators.zone_name(value)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=field) from exc
    return check(mail_rules.mail_domain, name, field=field)


def address(value: str, field: str) -> str:
    """Where an alias, forwarder or catch-all delivers (ours or not), by the node's destination rule."""
    value = str(value or "").strip()
    local, at, domain = value.rpartition("@")
    if not at:
        raise InvalidInput(f"{value!r} is not an email address.", field=field)
    try:
        domain = dns_validators.zone_name(domain)
    except InvalidInput as exc:
        raise InvalidInput(f"{value!r} is not an email address: {exc.message}", field=field) from exc
    return check(mail_rules.destination, f"{local}@{domain}", field=field)


def destinations(values) -> list[str]:
    """An alias's destinations: at least one, each by ``address``; sorted, without repeats."""
    out = [address(v, "destinations") for v in values or []]
    if not out:
        raise InvalidInput("At least one destination.", field="destinations")
    return sorted(set(out))


def responder_text(data: dict, current: Autoresponder | None) -> dict:
    """Clean what a reply may say, by the node's rule (agent/validate/sieve.py): the cleaned subject
    and body of ``data``; the interval and the dates (with ``current``'s for what ``data`` leaves
    out) are checked only."""
    out = {}
    if "subject" in data:
        out["subject"] = check(sieve_rules.vacation_subject, data["subject"], field="subject")
    if "body" in data:
        out["body"] = check(sieve_rules.vacation_body, data["body"], field="body")
    if "interval_days" in data:
        check(sieve_rules.vacation_days, data["interval_days"], field="interval_days")
    start = data.get("start_date", getattr(current, "start_date", None))
    end = data.get("end_date", getattr(current, "end_date", None))
    check(sieve_rules.vacation_end, end, field="end_date", start=start)
    return out
