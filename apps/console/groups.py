"""Operators' groups: what each kind of operator may see and do in the admin.

Every group may view every model of ours (operators need the whole picture to help anyone);
what differs is what they may change. Admin actions that call services ask for the model's
``change`` permission (``permissions=["operate"]``, see apps/common/admin.py), so e.g. only
billing may issue or void invoices and only infrastructure may suspend pods or retry jobs.
Superusers (the ``is_superuser`` flag, not a group) may do everything.

``ensure_operator_groups`` sets each group's permissions to exactly this list: it is idempotent
and it removes what was granted by hand beyond the list. ``manage.py operator_groups`` runs it
(``make run`` does at setup).
"""

from __future__ import annotations

from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction

SUPPORT = "support"
BILLING = "billing"
INFRASTRUCTURE = "infrastructure"

# "app_label.model": the actions granted on top of "view" for every model of ours.
GRANTS: dict[str, dict[str, list[str]]] = {
    SUPPORT: {
        "customers.customer": ["add", "change"],
        "customers.contact": ["add", "change", "delete"],
        "tenancy.membership": ["add", "change", "delete"],
        "tenancy.invitation": ["change"],  # revoke
        "accounts.authtoken": ["change"],  # revoke a session
        "security.apitoken": ["change"],  # revoke a personal API token
    },
    BILLING: {
        "customers.customer": ["add", "change"],
        "billing.invoice": ["add", "change"],  # issue, void, mark uncollectible
        "billing.payment": ["add", "change"],
        "billing.creditnote": ["add", "change"],
        "billing.subscription": ["add", "change"],  # add; change plan, suspend, resume, cancel
        "billing.billingsettings": ["change"],
        "orders.order": ["add", "change"],  # place, accept, cancel
        "catalog.product": ["add", "change"],
        "catalog.price": ["add", "change", "delete"],
        "catalog.bundleitem": ["add", "change", "delete"],
        "catalog.taxrate": ["add", "change"],
    },
    INFRASTRUCTURE: {
        "nodes.node": ["add", "change"],
        "cloudpods.cloudpod": ["add", "change"],  # create, resize, suspend, resume, delete through the services
        "cloudpods.tenantquota": ["add", "change"],
        "databases.databaseserver": ["add", "change"],
        "databases.database": ["add", "change"],
        "databases.databaseuser": ["add", "change"],  # rotate a password
        "databases.databasegrant": ["add", "change"],  # revoke
        "websites.website": ["add", "change"],
        "ssl.certificate": ["change"],  # renew, revoke, delete through the services
        "hosting.hostingaccount": ["change"],  # limit overrides
        "hosting.todo": ["change"],  # close a to-do, run the reconciliation
        "dns.zone": ["add", "change"],
        "dns.record": ["add", "change"],
        "whitelabel.brand": ["change"],  # apply the brand's name servers to the tenant's zones
        "whitelabel.customdomain": ["change"],  # check the TXT record, ask for the certificate again
        "domains.domain": ["add", "change"],  # verify, renew, transfer out
        "mail.maildomain": ["add", "change"],
        "mail.mailbox": ["add", "change"],
        "mail.alias": ["add", "change"],
        "jobs.job": ["change"],  # retry, cancel
        "security.shieldpolicy": ["add", "change"],
    },
}


def our_models() -> list:
    return [m for m in django_apps.get_models() if m.__module__.startswith("apps.")]


def wanted_permissions(group: str) -> set[tuple[str, str]]:
    """``{(app_label, codename)}`` for one group."""
    wanted = {(m._meta.app_label, f"view_{m._meta.model_name}") for m in our_models()}
    for label, actions in GRANTS[group].items():
        app_label, model_name = label.split(".")
        wanted |= {(app_label, f"{action}_{model_name}") for action in actions}
    return wanted


@transaction.atomic
def ensure_operator_groups() -> dict[str, int]:
    """Create or update the groups; returns the number of permissions each holds."""
    ContentType.objects.get_for_models(*our_models())  # make sure every content type exists
    by_key = {
        (p.content_type.app_label, p.codename): p
        for p in Permission.objects.select_related("content_type").filter(
            content_type__app_label__in={m._meta.app_label for m in our_models()}
        )
    }
    counts = {}
    for name in GRANTS:
        wanted = wanted_permissions(name)
        missing = sorted(f"{a}.{c}" for a, c in wanted - by_key.keys())
        if missing:
            # A renamed model or a missing migrate: fail loudly rather than grant less silently.
            raise LookupError(f"permissions not found for group {name}: {', '.join(missing)}")
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set([by_key[key] for key in wanted])
        counts[name] = len(wanted)
    return counts
