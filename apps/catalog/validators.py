"""The shape of a product's ``config``, per product type, checked where products are saved.

A hosting plan's config is its limits (what ``apps.hosting`` stores on the customer's hosting
account and enforces where each resource is made); an add-on's config says what it adds to the
limits of the subscription it is attached to; a service's config may carry the text of the to-do
it creates. An unknown key is refused: a typo (``"websits": 5``) must not silently mean
"unlimited".
"""

from __future__ import annotations

import re
from typing import Any

from apps.common.exceptions import InvalidInput

# Counted or measured limits: a whole number ≥ 0, or null for "unlimited". ``mail_quota_mb`` is
# the most one mailbox may be given; ``disk_quota_mb`` the account's files, measured on the node.
COUNT_LIMITS = ("websites", "mailboxes", "databases", "pods")
SIZE_LIMITS = ("disk_quota_mb", "mail_quota_mb", "bandwidth_gb", "backups_kept")
NUMERIC_LIMITS = COUNT_LIMITS + SIZE_LIMITS
# ``php_versions``: the versions the plan's websites may run (empty or absent: any the node has);
# ``ssl``: whether the plan's websites may serve HTTPS (absent: yes).
# ``overage``: the quota whose use above the plan's amount is billed per GB at the product's
# metering price (apps.hosting reports it as usage records at each period's end): the bandwidth
# served, or the disk's peak over the quota.
OVERAGE_METERS = ("bandwidth_gb", "disk_quota_mb")
HOSTING_PLAN_KEYS = frozenset({*NUMERIC_LIMITS, "php_versions", "ssl", "overage"})
PHP_VERSION = re.compile(r"^\d\.\d{1,2}$")
MAX_LIMIT = 10**9


def _whole(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
        raise InvalidInput(f"{field}: a whole number from 0 to {MAX_LIMIT}, or null for unlimited.", field="config")
    return value


def hosting_plan_config(config: dict) -> dict:
    """The plan's limits, checked; returned unchanged (absent keys mean unlimited / any)."""
    unknown = set(config) - HOSTING_PLAN_KEYS
    if unknown:
        raise InvalidInput(
            f"Unknown hosting plan settings: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(HOSTING_PLAN_KEYS))}).",
            field="config",
        )
    for key in NUMERIC_LIMITS:
        if key in config:
            _whole(config[key], key)
    if "php_versions" in config:
        versions = config["php_versions"]
        if not isinstance(versions, list) or not all(isinstance(v, str) and PHP_VERSION.match(v) for v in versions):
            raise InvalidInput('php_versions: a list of versions such as ["8.2", "8.3"].', field="config")
    if "ssl" in config and not isinstance(config["ssl"], bool):
        raise InvalidInput("ssl: true or false.", field="config")
    if "overage" in config and config["overage"] not in OVERAGE_METERS:
        raise InvalidInput(f"overage: the metered quota, one of {', '.join(OVERAGE_METERS)} (the product's"
                           " metering prices each unit over the plan's amount).", field="config")  # fmt: skip
    return config


def addon_config(config: dict) -> dict:
    """``{"adds": {"disk_quota_mb": 10240, "websites": 1}}``: what the add-on adds to its parent's limits."""
    unknown = set(config) - {"adds"}
    if unknown:
        raise InvalidInput(f"Unknown add-on settings: {', '.join(sorted(unknown))} (known: adds).", field="config")
    adds = config.get("adds", {})
    if not isinstance(adds, dict):
        raise InvalidInput("adds: an object of limit: amount.", field="config")
    bad = set(adds) - set(NUMERIC_LIMITS)
    if bad:
        raise InvalidInput(f"An add-on adds to {', '.join(NUMERIC_LIMITS)} only, not {', '.join(sorted(bad))}.",
                           field="config")  # fmt: skip
    for key, value in adds.items():
        if _whole(value, f"adds.{key}") is None:
            raise InvalidInput(f"adds.{key}: a whole number.", field="config")
    return config


def service_config(config: dict) -> dict:
    """``{"todo": "what the staff must do"}`` (optional): the text of the to-do a sale creates."""
    unknown = set(config) - {"todo"}
    if unknown:
        raise InvalidInput(f"Unknown service settings: {', '.join(sorted(unknown))} (known: todo).", field="config")
    if "todo" in config and (not isinstance(config["todo"], str) or len(config["todo"]) > 2000):
        raise InvalidInput("todo: a text of at most 2000 characters.", field="config")
    return config


CONFIG_RULES = {"hosting_plan": hosting_plan_config, "addon": addon_config, "service": service_config}


def product_config(product_type: str, config: dict) -> dict:
    rule = CONFIG_RULES.get(product_type)
    return rule(config) if rule is not None else config
