"""Hosting accounts: made, suspended, resumed and terminated by the plan's subscription; their
limits (plan + add-ons + overrides) and usage; the staff's to-dos.

Lock order (one kind of row per step, always in this order): the subscription (billing holds it
when a plan changes) → the hosting account → the resources its services create (each resource's
own service locks them). The limit check of a new resource takes a per-customer advisory lock as
the LAST lock of its transaction (apps/hosting/limits.py), so it never waits while holding one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import ROUND_UP, Decimal
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from apps.audit import services as audit
from apps.billing.models import Subscription, SubscriptionStatus, UsageRecord
from apps.billing.services.subscriptions import usage_record
from apps.catalog.validators import COUNT_LIMITS, NUMERIC_LIMITS, hosting_plan_config
from apps.cloudpods.models import LIVE as POD_LIVE
from apps.cloudpods.models import CloudPod
from apps.common.exceptions import Conflict, InvalidInput
from apps.common.registry import Registry
from apps.databases.models import Database
from apps.jobs.registry import PermanentError
from apps.jobs.services import job_enqueue
from apps.mail import services as mail_services
from apps.mail.models import Mailbox, MailDomain
from apps.nodes.models import Node, NodeStatus, with_role
from apps.tenancy.models import Membership
from apps.tenancy.roles import Role
from apps.tenancy.scoping import all_tenants
from apps.websites import services as website_services
from apps.websites.models import Website, WebsiteStatus

from .models import LIVE_ACCOUNT, AccountStatus, HostingAccount, Todo, TodoKind, TodoStatus

log = logging.getLogger(__name__)

# Subscriptions whose add-ons count: an add-on of a suspended or cancelled subscription adds nothing.
LIVE_SUBSCRIPTION = [SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE]
NOUNS = {
    "websites": "websites", "mailboxes": "mailboxes", "databases": "databases", "pods": "pods",
    "disk_quota_mb": "MB of disk", "mail_quota_mb": "MB per mailbox",
}  # fmt: skip

# Called with the account just before a terminated account's resources are removed: the backups
# module registers its final backup here (``@BEFORE_TERMINATE.register("backups.final")``); a hook
# that raises stops the termination, and the job retries it.
BEFORE_TERMINATE: Registry[Callable[[HostingAccount], Any]] = Registry("hosting termination hook")


# --- limits and usage -------------------------------------------------------------------------------


def plan_limits(product) -> dict:
    """A hosting plan product's limits (its config, checked again: a config saved before the rule
    existed is refused here rather than misread)."""
    config = hosting_plan_config(dict(product.config or {}))
    return {k: v for k, v in config.items() if k != "overage"}  # how overage is billed is not a limit


def addon_subscriptions(sub: Subscription):
    return Subscription.all_tenants.select_related("product").filter(
        tenant_id=sub.tenant_id, product__type="addon", config__parent=str(sub.pk), status__in=LIVE_SUBSCRIPTION
    )


def effective_limits(sub: Subscription, product=None, overrides: dict | None = None) -> dict:
    """Plan (``product``, default the subscription's) + its live add-ons (times quantity) + overrides.
    A limit absent from the plan is unlimited, and an add-on cannot make it less so."""
    limits = plan_limits(product or sub.product)
    for addon in addon_subscriptions(sub):
        for key, amount in ((addon.product.config or {}).get("adds") or {}).items():
            if key in limits and limits[key] is not None:
                limits[key] = limits[key] + amount * addon.quantity
    limits.update(overrides or {})
    return limits


def customer_usage(tenant_id, customer_id) -> dict[str, int]:
    """What a customer has made, across all its plans (the counted limits)."""
    return {
        "websites": Website.all_tenants.filter(tenant_id=tenant_id, customer_id=customer_id)
        .exclude(status=WebsiteStatus.DELETED)
        .count(),
        "mailboxes": Mailbox.all_tenants.filter(tenant_id=tenant_id, mail_domain__customer_id=customer_id).count(),
        "databases": Database.all_tenants.filter(tenant_id=tenant_id, customer_id=customer_id).count(),
        "pods": CloudPod.all_tenants.filter(
            tenant_id=tenant_id, status__in=POD_LIVE,
            subscription__in=[str(pk) for pk in Subscription.all_tenants.filter(
                tenant_id=tenant_id, customer_id=customer_id).values_list("pk", flat=True)],
        ).count(),
    }  # fmt: skip


def live_accounts(tenant_id, customer_id):
    return HostingAccount.all_tenants.filter(tenant_id=tenant_id, customer_id=customer_id, status__in=LIVE_ACCOUNT)


def combined_limits(accounts) -> dict:
    """A customer's limits across its live plans: counts and sizes add up (one unlimited plan makes
    the limit unlimited), PHP versions join, SSL is included if any plan includes it."""
    out: dict[str, Any] = {}
    for account in accounts:
        for key in NUMERIC_LIMITS:
            if key not in account.limits or account.limits[key] is None:
                out[key] = None
            elif out.get(key, 0) is not None:
                out[key] = out.get(key, 0) + account.limits[key]
        if "php_versions" in account.limits and out.get("php_versions", []) is not None:
            versions = account.limits["php_versions"]
            out["php_versions"] = sorted(set(out.get("php_versions", [])) | set(versions)) if versions else None
        else:
            out["php_versions"] = None
        out["ssl"] = out.get("ssl", False) or account.limits.get("ssl", True)
    return out


def over_limits(limits: dict, used: dict) -> list[str]:
    """The limits ``used`` exceeds, as sentences naming each: "websites: 6 in use, the plan allows 5"."""
    over = []
    for key in (*COUNT_LIMITS, "disk_quota_mb"):
        limit = limits.get(key)
        have = used.get(key if key != "disk_quota_mb" else "disk_mb", 0)
        if limit is not None and have > limit:
            over.append(f"{key}: {have} in use, the plan allows {limit}")
    return over


USAGE_ROWS = ("websites", "mailboxes", "databases", "pods", "disk_quota_mb", "bandwidth_gb")
GB = 1024**3


def account_usage(account: HostingAccount) -> dict:
    """The account's usage as the API shows it: per limit, what is used and what is allowed (the
    counts from ``selectors.with_usage``'s annotations when the row has them)."""
    if hasattr(account, "used_websites"):
        used = {key: getattr(account, f"used_{key}") for key in ("websites", "mailboxes", "databases", "pods")}
    else:
        used = customer_usage(account.tenant_id, account.customer_id)
    used["disk_quota_mb"] = account.disk_used_mb
    used["bandwidth_gb"] = -(-account.bandwidth_used_bytes // GB)
    return {key: {"used": used.get(key, 0), "limit": account.limits.get(key)} for key in USAGE_ROWS}


def _check_fits(account: HostingAccount, limits: dict, what: str) -> None:
    used = customer_usage(account.tenant_id, account.customer_id)
    used["disk_mb"] = account.disk_used_mb
    # The customer's other plans count too: the new limits of this one plus those of the others.
    others = [a for a in live_accounts(account.tenant_id, account.customer_id) if a.pk != account.pk]
    combined = combined_limits([*others, _with_limits(account, limits)])
    over = over_limits(combined, used)
    if over:
        raise Conflict(f"{what} refused, more is in use than it allows: {'; '.join(over)}.", code="over_limit")


def _with_limits(account: HostingAccount, limits: dict) -> HostingAccount:
    copy = HostingAccount(tenant_id=account.tenant_id, customer_id=account.customer_id, limits=limits)
    copy.pk = account.pk
    return copy


def _lock(account: HostingAccount) -> HostingAccount:
    return (
        HostingAccount.all_tenants.select_for_update(of=("self",))
        .select_related("subscription__product")
        .get(pk=account.pk)
    )


def account_refresh_limits(account: HostingAccount, *, actor=None) -> HostingAccount:
    """Recompute the account's limits (its plan or add-ons changed). Never refused: what is over
    is reported by the reconciliation, nothing is removed."""
    account = _lock(account)
    with audit.change(account, "hosting.account.limits", actor=actor) as change:
        account.limits = effective_limits(account.subscription, overrides=account.limit_overrides)
        if audit.snapshot(account) == change.before:
            change.skip()
            return account
        account.save(update_fields=["limits", "updated_at"])
    return account


@transaction.atomic
def account_set_overrides(*, account: HostingAccount, overrides: dict, actor=None) -> HostingAccount:
    """The tenant's own limits for this account, on top of the plan (``null``: unlimited; a key
    left out: the plan's). Refused (409, naming what is over) below what is in use."""
    if not isinstance(overrides, dict):
        raise InvalidInput("An object of limit: value.", field="limit_overrides")
    try:
        hosting_plan_config(overrides)
    except InvalidInput as exc:
        raise InvalidInput(exc.detail if hasattr(exc, "detail") else str(exc), field="limit_overrides") from exc
    account = _lock(account)
    if account.status == AccountStatus.DELETED:
        raise Conflict("A terminated account's limits cannot be changed.")
    limits = effective_limits(account.subscription, overrides=overrides)
    _check_fits(account, limits, "This limit change is")
    with audit.change(account, "hosting.account.limits", actor=actor):
        account.limit_overrides = overrides
        account.limits = limits
        account.save(update_fields=["limit_overrides", "limits", "updated_at"])
    return account


def plan_change_check(sub: Subscription, product, quantity: int) -> None:
    """billing's PLAN_CHANGES hook for hosting plans: the new plan's limits must hold what is in
    use (a 409 naming each limit that would be exceeded); then the account takes them."""
    account = HostingAccount.all_tenants.filter(subscription=sub).exclude(status=AccountStatus.DELETED).first()
    if product.type != "hosting_plan":
        raise Conflict("A hosting plan can only be changed to another hosting plan.", code="wrong_product_type")
    if account is None:
        return  # not provisioned yet: the activation reads the new plan
    account = _lock(account)
    limits = effective_limits(sub, product=product, overrides=account.limit_overrides)
    _check_fits(account, limits, f"Changing to {product.name} is")
    with audit.change(account, "hosting.account.limits"):
        account.limits = limits
        account.save(update_fields=["limits", "updated_at"])


# --- the account's life, driven by its subscription's jobs ------------------------------------------


def account_of(sub: Subscription) -> HostingAccount | None:
    return HostingAccount.all_tenants.filter(subscription=sub).first()


def pick_web_node() -> Node:
    """The active web node with the fewest live websites (the website placement rule's order)."""
    node = (
        Node.objects.filter(with_role("web"), status=NodeStatus.ACTIVE)
        .annotate(live=Count("websites", filter=~Q(websites__status=WebsiteStatus.DELETED)))
        .order_by("live", "hostname")
        .first()
    )
    if node is None:
        raise Conflict("No active node with the 'web' role for the hosting account.", code="no_web_node")
    return node


@transaction.atomic
def account_activate(sub: Subscription) -> HostingAccount:
    """Make (or finish making) the account of a paid hosting plan: its row and limits, a web node,
    a first website for the order's domain, a mail domain for it when the plan has mailboxes.
    Each step looks first, so running it again after a failure does only what is missing."""
    limits = effective_limits(sub)
    domain = str((sub.config or {}).get("domain") or "").strip().lower().rstrip(".")
    try:
        with transaction.atomic():
            account, made = HostingAccount.all_tenants.get_or_create(
                subscription=sub,
                defaults={
                    "tenant_id": sub.tenant_id,
                    "customer_id": sub.customer_id,
                    "limits": limits,
                    "domain": domain,
                },
            )
    except IntegrityError:  # a concurrent activation made it
        account, made = HostingAccount.all_tenants.get(subscription=sub), False
    account = _lock(account)
    if made:
        audit.created(account, "hosting.account.create", actor=audit.SYSTEM)
    if account.status == AccountStatus.DELETED:
        raise PermanentError("This hosting account was terminated; a new subscription makes a new one.")
    with audit.change(account, "hosting.account.activate", actor=audit.SYSTEM) as change:
        account.limits = effective_limits(sub, overrides=account.limit_overrides)
        if account.node_id is None:
            account.node = pick_web_node()
        if account.domain and account.website_id is None:
            # Static until the order names a PHP version (the plan says which it may name).
            php = str((sub.config or {}).get("php_version") or "")
            site = website_services.website_create(
                tenant=sub.tenant, primary_domain=account.domain, node=account.node, customer=sub.customer,
                https=limits.get("ssl", True), php_version=php, actor=audit.SYSTEM,
            )  # fmt: skip
            account.website = site
            account.system_user = site.system_user
        if account.domain and account.mail_domain_id is None and limits.get("mailboxes", 1) != 0:
            existing = MailDomain.all_tenants.filter(tenant_id=sub.tenant_id, name=account.domain).first()
            if existing is not None and existing.customer_id != sub.customer_id:
                # Adopting it would hand the tenant's (or another customer's) mail to this plan, and
                # its termination would remove it: a person decides (give it to the customer, retry).
                raise PermanentError(f"The mail domain {account.domain} exists already and is not this customer's.")
            account.mail_domain = existing or mail_services.mail_domain_create(
                tenant=sub.tenant, name=account.domain, customer=sub.customer, actor=audit.SYSTEM
            )
        account.status = AccountStatus.SUSPENDED if sub.status == SubscriptionStatus.SUSPENDED else AccountStatus.ACTIVE
        account.last_error = ""
        account.save()
        if not made and audit.snapshot(account) == change.before:
            change.skip()
    return account


def customer_sites(account: HostingAccount):
    """Every live website of the account's customer counts as the account's (its plan limits them)."""
    return Website.all_tenants.filter(tenant_id=account.tenant_id, customer_id=account.customer_id).exclude(
        status__in=[WebsiteStatus.DELETED, WebsiteStatus.DELETING]
    )


@transaction.atomic
def account_suspend(sub: Subscription) -> HostingAccount | None:
    """Suspend the account: its websites answer the suspension page (503) from nginx, and no new
    resource is made for the customer while it is suspended (the limit check refuses); its mail
    domains defer mail and refuse logins on the mail node. The sites and mail domains
    are the customer's, unless another of its plans is still running: then only the account's own."""
    account = account_of(sub)
    if account is None or account.status == AccountStatus.DELETED:
        return account
    account = _lock(account)  # suspended already: a site that serves again anyway is suspended again
    running = live_accounts(account.tenant_id, account.customer_id).exclude(pk=account.pk)
    sites = customer_sites(account)
    only_own = running.exclude(status=AccountStatus.SUSPENDED).exists()
    if only_own:
        sites = sites.filter(pk=account.website_id)
    suspended = []
    for site in sites.filter(status__in=[WebsiteStatus.ACTIVE, WebsiteStatus.PENDING]):
        website_services.website_suspend(website=site, actor=audit.SYSTEM)
        suspended.append(str(site.pk))
    mail_suspended = suspend_mail(account, only_own=only_own)
    with audit.change(account, "hosting.account.suspend", actor=audit.SYSTEM) as change:
        account.status = AccountStatus.SUSPENDED
        account.suspended_sites = sorted(set(account.suspended_sites) | set(suspended))
        account.suspended_mail_domains = sorted(set(account.suspended_mail_domains) | set(mail_suspended))
        if audit.snapshot(account) == change.before and not suspended and not mail_suspended:
            change.skip()
            return account
        account.save(update_fields=["status", "suspended_sites", "suspended_mail_domains", "updated_at"])
    return account


def customer_mail_domains(account: HostingAccount):
    return MailDomain.all_tenants.filter(tenant_id=account.tenant_id, customer_id=account.customer_id)


def suspend_mail(account: HostingAccount, *, only_own: bool) -> list[str]:
    """Suspend the mail domains the plan covers (the customer's, or only the account's own while
    another of its plans runs); returns the ids of those it suspended now."""
    domains = customer_mail_domains(account)
    if only_own:
        domains = domains.filter(pk=account.mail_domain_id)
    done = []
    for mail_domain in domains.filter(suspended=False):
        if mail_services.mail_domain_suspend(mail_domain=mail_domain, actor=audit.SYSTEM):
            done.append(str(mail_domain.pk))
    return done


@transaction.atomic
def account_resume(sub: Subscription) -> HostingAccount | None:
    """Lift the plan's suspension: the websites it suspended serve again."""
    account = account_of(sub)
    if account is None or account.status == AccountStatus.DELETED:
        return account
    account = _lock(account)
    for site in Website.all_tenants.filter(pk__in=account.suspended_sites, status=WebsiteStatus.SUSPENDED):
        website_services.website_resume(website=site, actor=audit.SYSTEM)
    for mail_domain in MailDomain.all_tenants.filter(pk__in=account.suspended_mail_domains, suspended=True):
        mail_services.mail_domain_resume(mail_domain=mail_domain, actor=audit.SYSTEM)
    with audit.change(account, "hosting.account.resume", actor=audit.SYSTEM):
        account.status = AccountStatus.ACTIVE
        account.suspended_sites = []
        account.suspended_mail_domains = []
        account.save(update_fields=["status", "suspended_sites", "suspended_mail_domains", "updated_at"])
    return account


@transaction.atomic
def account_terminate(sub: Subscription) -> HostingAccount | None:
    """The plan ended (cancelled, or terminated after its grace period): the final backup hooks
    run, then the account's first website and mail domain are removed (a website's files stay in
    the trash for ``WEBSITE_PURGE_GRACE_SECONDS``). Other websites of the customer are left as they
    are: the reconciliation reports them if no plan covers them any more."""
    account = account_of(sub)
    if account is None or account.status == AccountStatus.DELETED:
        return account
    account = _lock(account)
    for hook in BEFORE_TERMINATE:
        hook(account)
    site = Website.all_tenants.filter(pk=account.website_id).first() if account.website_id else None
    if site is not None and site.status not in (WebsiteStatus.DELETED, WebsiteStatus.DELETING):
        website_services.website_delete(website=site, actor=audit.SYSTEM)
    mail_domain = MailDomain.all_tenants.filter(pk=account.mail_domain_id).first() if account.mail_domain_id else None
    with audit.change(account, "hosting.account.terminate", actor=audit.SYSTEM):
        account.status = AccountStatus.DELETED
        account.terminated_at = timezone.now()
        account.mail_domain = None
        account.save()
    if mail_domain is not None:
        mail_services.mail_domain_delete(mail_domain=mail_domain, actor=audit.SYSTEM)
    return account


# --- disk usage ------------------------------------------------------------------------------------


QUOTA_NOUNS = {"disk_quota_mb": ("disk", "MB"), "bandwidth_gb": ("bandwidth", "GB")}
WARN_AT = 80  # % of a quota: the early warning


def quota_level(used: int, limit: int | None) -> int:
    """100 over the quota, 80 at 80 % of it or more, else 0 (an unlimited quota is never crossed)."""
    if limit is None:
        return 0
    if used > limit:
        return 100
    return WARN_AT if limit > 0 and used * 100 >= limit * WARN_AT else 0


def _quota_crossings(account: HostingAccount, used: dict[str, int]) -> list[tuple[str, int, int, int]]:
    """Update ``quota_levels``; the quotas that crossed a level upward (key, level, used, limit). A
    quota back under a level lowers it, so crossing it again notifies again."""
    crossed = []
    levels = dict(account.quota_levels or {})
    for key, have in used.items():
        limit = account.limits.get(key)
        level, before = quota_level(have, limit), int(levels.get(key, 0))
        if level > before:
            crossed.append((key, level, have, limit))
        if level:
            levels[key] = level
        else:
            levels.pop(key, None)
    account.quota_levels = levels
    return crossed


def _notify_quota(account: HostingAccount, key: str, level: int, used: int, limit: int) -> None:
    """Once per crossing: an audit record, a to-do for the tenant's staff and an email to its owners
    and admins (after the commit)."""
    noun, unit = QUOTA_NOUNS[key]
    title = (f"Hosting account {account} is over its {noun} quota" if level == 100
             else f"Hosting account {account} has used {WARN_AT} % of its {noun} quota")  # fmt: skip
    detail = f"The hosting account {account} uses {used} {unit} of {noun}; its plan allows {limit} {unit}."
    audit.record(action="hosting.account.over_quota" if level == 100 else "hosting.account.quota_warning",
                 obj=account, after={"quota": key, "used": used, "limit": limit, "level": level},
                 actor=None)  # fmt: skip
    todo_open(tenant_id=account.tenant_id, kind=TodoKind.QUOTA, key=f"quota:{key}:{level}:{account.pk}",
              title=title, detail=detail, customer_id=account.customer_id, subscription_id=account.subscription_id,
              object_type="hosting.account", object_id=str(account.pk))  # fmt: skip
    notify_staff(account.tenant_id, title, detail)


def account_record_disk(*, account: HostingAccount, used_mb: int, served_bytes: int | None = None) -> HostingAccount:
    """Store a measurement: disk in MB and, when given, the bytes the sites served since the last
    one (added to the current period's bandwidth; a new subscription period first closes the last
    one, billing its overage, then counts from 0). Crossing 80 % or 100 % of a quota upward
    notifies once (``_notify_quota``); ``over_quota_since`` says since when disk is over."""
    with transaction.atomic():
        account = _lock(account)
        sub = Subscription.all_tenants.select_related("product").get(pk=account.subscription_id)
        quota = account.limits.get("disk_quota_mb")
        now = timezone.now()
        account.disk_used_mb = used_mb
        account.disk_measured_at = now
        if quota is not None and used_mb > quota:
            account.over_quota_since = account.over_quota_since or now
        else:
            account.over_quota_since = None
        if account.bandwidth_period_start != sub.current_period_start:
            if account.bandwidth_period_start is not None:
                bill_overage(account, sub)
            account.bandwidth_period_start = sub.current_period_start
            account.bandwidth_used_bytes = 0
            account.disk_peak_mb = 0
        account.disk_peak_mb = max(account.disk_peak_mb, used_mb)
        if served_bytes is not None:
            account.bandwidth_used_bytes += max(0, int(served_bytes))
            account.bandwidth_measured_at = now
        used = {"disk_quota_mb": used_mb, "bandwidth_gb": -(-account.bandwidth_used_bytes // GB)}
        crossed = _quota_crossings(account, used)
        account.save(update_fields=["disk_used_mb", "disk_measured_at", "over_quota_since", "bandwidth_used_bytes",
                                    "bandwidth_period_start", "bandwidth_measured_at", "disk_peak_mb",
                                    "quota_levels", "updated_at"])  # fmt: skip
        for key, level, have, limit in crossed:
            _notify_quota(account, key, level, have, limit)
    return account


def overage_units(account: HostingAccount, product) -> Decimal:
    """The GB over the plan's amount of the quota the product bills overage for (0 when none), to
    three decimals, rounded up: bandwidth served (1024³ bytes) above ``bandwidth_gb``, or the disk's
    peak of the period (1024 MB) above ``disk_quota_mb``."""
    meter = (product.config or {}).get("overage")
    limit = account.limits.get(meter) if meter else None
    if limit is None:
        return Decimal(0)
    if meter == "bandwidth_gb":
        over = Decimal(account.bandwidth_used_bytes) / GB - limit
    elif meter == "disk_quota_mb":
        over = Decimal(account.disk_peak_mb - limit) / 1024
    else:
        return Decimal(0)
    return max(Decimal(0), over.quantize(Decimal("0.001"), rounding=ROUND_UP))


def bill_overage(account: HostingAccount, sub: Subscription) -> UsageRecord | None:
    """The ended period's overage as a usage record of the plan's subscription, which the billing
    run bills (apps.billing, metered usage in arrears). Its key names the meter and the period, so
    it is recorded once whatever runs twice. Nothing when the product bills no overage or is not
    metered."""
    units = overage_units(account, sub.product)
    if units <= 0:
        return None
    if not (sub.product.metering or {}).get("unit_prices"):
        log.warning("plan %s bills overage but has no metering price", sub.product_id)
        return None
    meter, period = sub.product.config["overage"], account.bandwidth_period_start
    record, _ = usage_record(sub=sub, quantity=units, key=f"overage:{meter}:{period}",
                             occurred_at=timezone.now())  # fmt: skip
    return record


def measure_disk_all() -> dict:
    """One ``hosting.disk_usage`` job per live account (the ``hosting.measure_disk`` beat task);
    the job key is per hour, so a beat that runs twice in an hour measures once."""
    hour = timezone.now().strftime("%Y-%m-%dT%H")
    count = 0
    with all_tenants():
        accounts = list(HostingAccount.all_tenants.select_related("tenant").filter(
            status__in=[AccountStatus.ACTIVE, AccountStatus.SUSPENDED]))  # fmt: skip
    for account in accounts:
        with transaction.atomic():
            job_enqueue(tenant=account.tenant, type="hosting.disk_usage", payload={"account": str(account.pk)},
                        key=f"hosting.disk_usage:{account.pk}:{hour}", obj=account)  # fmt: skip
        count += 1
    return {"accounts": count}


# --- to-dos ----------------------------------------------------------------------------------------


def todo_open(*, tenant_id, kind: str, key: str, title: str, detail: str = "", customer_id=None,
              subscription_id=None, object_type: str = "", object_id: str = "") -> tuple[Todo, bool]:  # fmt: skip
    """The open to-do of ``key``, made if there is none (so a check that finds the same problem
    every hour keeps one to-do, its ``last_seen_at`` moving)."""
    now = timezone.now()
    existing = Todo.all_tenants.filter(tenant_id=tenant_id, key=key, status=TodoStatus.OPEN).first()
    if existing is not None:
        Todo.all_tenants.filter(pk=existing.pk).update(last_seen_at=now, detail=detail or existing.detail)
        return existing, False
    try:
        with transaction.atomic():
            todo = Todo.all_tenants.create(
                tenant_id=tenant_id, kind=kind, key=key, title=title[:300], detail=detail, customer_id=customer_id,
                subscription_id=subscription_id, object_type=object_type, object_id=str(object_id), last_seen_at=now,
            )  # fmt: skip
    except IntegrityError:
        return Todo.all_tenants.get(tenant_id=tenant_id, key=key, status=TodoStatus.OPEN), False
    audit.created(todo, f"hosting.todo.{kind}", actor=audit.SYSTEM)
    return todo, True


@transaction.atomic
def todo_close(*, todo: Todo, resolution: str = "", actor=None) -> Todo:
    todo = Todo.all_tenants.select_for_update().get(pk=todo.pk)
    if todo.status == TodoStatus.CLOSED:
        raise Conflict("This to-do is closed already.")
    if len(resolution) > 2000:
        raise InvalidInput("At most 2000 characters.", field="resolution")
    with audit.change(todo, "hosting.todo.close", actor=actor):
        todo.status = TodoStatus.CLOSED
        todo.closed_at = timezone.now()
        todo.closed_by = actor if getattr(actor, "is_authenticated", False) else None
        todo.resolution = resolution
        todo.save()
    return todo


def todo_resolve(todo: Todo, resolution: str) -> None:
    """A reconciliation to-do whose problem is gone: closed by the platform itself."""
    with audit.change(todo, "hosting.todo.resolved", actor=audit.SYSTEM):
        todo.status = TodoStatus.CLOSED
        todo.closed_at = timezone.now()
        todo.resolution = resolution
        todo.save()


def service_todo(*, tenant_id, key: str, product, customer_id, subscription_id=None, quantity: int = 1,
                 reference: str = "") -> Todo:  # fmt: skip
    """The to-do a sold service creates for the tenant's staff."""
    what = (product.config or {}).get("todo") or f"Deliver {product.name}."
    title = f"{product.name}" + (f" x{quantity}" if quantity > 1 else "")
    todo, made = todo_open(
        tenant_id=tenant_id, kind=TodoKind.SERVICE, key=key, title=title, detail=f"{what}\n{reference}".strip(),
        customer_id=customer_id, subscription_id=subscription_id,
    )  # fmt: skip
    if made:
        notify_staff(tenant_id, f"New to-do: {title}", f"{what}\n{reference}".strip())
    return todo


def notify_staff(tenant_id, subject: str, body: str) -> None:
    """Email the tenant's owners and admins, after the commit (a lost email is logged, never a rollback)."""
    emails = sorted(
        set(
            Membership.objects.filter(tenant_id=tenant_id, role__in=[Role.OWNER, Role.ADMIN])
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
    )
    if not emails:
        return

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, emails)
        except OSError:
            log.exception("could not email %s to tenant %s", subject, tenant_id)

    transaction.on_commit(send)
