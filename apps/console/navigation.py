"""The admin's navigation grouped by what operators do, not by Python package.

Django lists apps alphabetically, one box per package: "Billing", "Catalog", "Customers",
"Orders" apart, two "Accounts" (ours and allauth's), Axes and Celery beat between them.
Operators think in jobs: customers and billing, infrastructure, hosting, security, the platform.
``sections`` regroups the app dicts ``AdminSite._build_app_dict`` made (with their permissions
already applied) into those five, in the order below; plumbing only superusers see.
"""

from __future__ import annotations

from typing import Any

# Each section: (key, title, models in the order shown). A model is "app_label.ObjectName";
# "app_label.*" takes every model of an app. A registered model named nowhere lands in Platform.
SECTIONS: list[tuple[str, str, list[str]]] = [
    (
        "customers-billing",
        "Customers and billing",
        [
            "customers.Customer",
            "customers.Contact",
            "billing.Invoice",
            "billing.Payment",
            "billing.CreditNote",
            "billing.Subscription",
            "orders.Order",
            "catalog.Product",
            "catalog.TaxRate",
            "billing.UsageRecord",
            "billing.SubscriptionCharge",
            "billing.CreditTransaction",
            "billing.DunningNotice",
            "billing.CheckoutSession",
            "billing.WebhookEvent",
            "billing.BillingSettings",
            "billing.NumberSequence",
        ],
    ),
    (
        "infrastructure",
        "Infrastructure",
        [
            "nodes.Node",
            "jobs.Job",
            "jobs.JobAttempt",
            "databases.DatabaseServer",
            "cloudpods.TenantQuota",
            "metrics.NodeReport",
            "metrics.Sample",
            "metrics.MinuteRollup",
            "metrics.HourRollup",
        ],
    ),
    (
        "hosting",
        "Hosting",
        [
            "cloudpods.CloudPod",
            "websites.Website",
            "websites.WebsiteDomain",
            "domains.Domain",
            "dns.Zone",
            "dns.Record",
            "mail.MailDomain",
            "mail.Mailbox",
            "mail.Alias",
            "mail.Autoresponder",
            "databases.Database",
            "databases.DatabaseUser",
            "databases.DatabaseGrant",
            "names.NameDelegation",
        ],
    ),
    (
        "security",
        "Security",
        [
            "security.SecurityEvent",
            "audit.AuditEvent",
            "security.SecurityPolicy",
            "security.ApiToken",
            "accounts.AuthToken",
            "otp_totp.TOTPDevice",
            "security.ShieldPolicy",
            "security.ShieldEvent",
            "security.GuardianFinding",
            "security.GuardianCheckRun",
            "axes.*",
        ],
    ),
    (
        "platform",
        "Platform",
        [
            "tenancy.Tenant",
            "tenancy.Membership",
            "tenancy.Invitation",
            "accounts.User",
            "auth.Group",
            "account.*",
            "socialaccount.*",
            "django_celery_beat.*",
            "sites.*",
            "common.*",
        ],
    ),
]
FALLBACK = "platform"

# What runs the platform underneath rather than the business: shown to superusers only (an
# operator group may hold a view permission on some of it; the page stays reachable by URL).
PLUMBING: frozenset[str] = frozenset(
    {
        "axes.*",
        "account.*",
        "socialaccount.*",
        "django_celery_beat.*",
        "sites.*",
        "common.*",
        "billing.NumberSequence",
        "metrics.Sample",
        "metrics.MinuteRollup",
        "metrics.HourRollup",
    }
)


def _matches(key: str, patterns) -> bool:
    app_label = key.split(".", 1)[0]
    return key in patterns or f"{app_label}.*" in patterns


def is_plumbing(app_label: str, object_name: str) -> bool:
    return _matches(f"{app_label}.{object_name}", PLUMBING)


def _place(key: str) -> tuple[int, int]:
    """(section index, position inside it) of a model."""
    app_label = key.split(".", 1)[0]
    for s, (_name, _title, members) in enumerate(SECTIONS):
        for p, pattern in enumerate(members):
            if pattern == key or pattern == f"{app_label}.*":
                return s, p
    fallback = next(i for i, (name, _t, _m) in enumerate(SECTIONS) if name == FALLBACK)
    return fallback, len(SECTIONS[fallback][2])


def visible_models(app: dict[str, Any], *, superuser: bool) -> list[dict[str, Any]]:
    return [m for m in app["models"] if superuser or not is_plumbing(app["app_label"], m["object_name"])]


def sections(apps: list[dict[str, Any]], *, superuser: bool) -> list[dict[str, Any]]:
    """The app dicts of ``_build_app_dict`` regrouped into the operators' sections (empty ones dropped)."""
    placed: list[list[tuple[int, str, dict[str, Any]]]] = [[] for _ in SECTIONS]
    for app in apps:
        for model in visible_models(app, superuser=superuser):
            key = f"{app['app_label']}.{model['object_name']}"
            section, position = _place(key)
            placed[section].append((position, str(model["name"]), model))
    result = []
    for (name, title, _members), models in zip(SECTIONS, placed, strict=True):
        if not models:
            continue
        models.sort(key=lambda row: (row[0], row[1]))
        result.append(
            {
                "name": title,
                "app_label": name,
                "app_url": "",  # a section is not an app: no app index page behind it
                "has_module_perms": True,
                "models": [m for _p, _n, m in models],
                "section": True,
            }
        )
    return result
