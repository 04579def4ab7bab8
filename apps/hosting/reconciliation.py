"""The answer to "paid but not provisioned": a periodic check of hosting plans against what exists.

For every live hosting-plan subscription (active, past due, suspended) it finds:
- no hosting account, or one in error → the activation is run again (a job);
- the account's website missing (deleted behind the plan), in error, or in the wrong state for the
  subscription (serving while the plan is suspended, or suspended while it is paid) → the website is
  converged again, resumed or suspended as the subscription says (a job);
- the website's vhost gone from its node while the panel has it (someone removed the file) → the
  website is converged again (a job writes the vhost back);
and every resource that no live plan covers:
- a customer's website or mail domain when the customer has no live hosting account.

What it fixes it records as a to-do closed at the next check when fixed; what it cannot fix it
reports (an open to-do in the API and the admin; the tenant's owners and admins are emailed when a
to-do is new). It NEVER deletes anything: an orphan stays as it is until a person decides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from apps.billing.models import Subscription, SubscriptionStatus
from apps.jobs.services import job_enqueue
from apps.mail.models import MailDomain
from apps.nodes.drivers import NodeError, driver_for
from apps.tenancy.models import Tenant
from apps.tenancy.scoping import tenant_scope
from apps.websites import services as website_services
from apps.websites.models import Website, WebsiteStatus

from . import services
from .models import LIVE_ACCOUNT, AccountStatus, HostingAccount, Todo, TodoKind, TodoStatus

log = logging.getLogger(__name__)

LIVE_PLAN = [SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE, SubscriptionStatus.SUSPENDED]


@dataclass
class Report:
    checked: int = 0
    retried: list[str] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)
    resolved: int = 0

    def as_dict(self) -> dict:
        return {"checked": self.checked, "retried": self.retried, "reported": self.reported, "resolved": self.resolved}


@dataclass
class Finding:
    key: str
    title: str
    detail: str
    retried: bool
    customer_id: object = None
    subscription_id: object = None
    object_type: str = ""
    object_id: str = ""


def _retry_activation(sub: Subscription) -> None:
    job_enqueue(tenant=sub.tenant, type="subscription.activate", payload={"subscription": str(sub.pk)},
                key=f"hosting.reconcile.activate:{sub.pk}:{timezone.now():%Y-%m-%dT%H}", obj=sub)  # fmt: skip


def _check_site(sub: Subscription, account: HostingAccount, findings: list[Finding]) -> None:
    site = Website.all_tenants.select_related("node").filter(pk=account.website_id).first()
    base = {"customer_id": sub.customer_id, "subscription_id": sub.pk, "object_type": "website"}
    if site is None or site.status in (WebsiteStatus.DELETED, WebsiteStatus.DELETING):
        # Deleted behind the plan: the account forgets it and the activation makes the site again
        # (its files, if any, are still in the node's trash until purged).
        with transaction.atomic():
            HostingAccount.all_tenants.filter(pk=account.pk).update(website=None)
            _retry_activation(sub)
        findings.append(Finding(key=f"reconcile:website_missing:{sub.pk}", retried=True,
                                title=f"Website {account.domain} of a paid plan was missing: made again",
                                detail="The plan's website had been deleted; the activation was run again.",
                                object_id=str(account.website_id or ""), **base))  # fmt: skip
        return
    suspended_plan = sub.status == SubscriptionStatus.SUSPENDED
    if site.status == WebsiteStatus.ERROR:
        website_services.website_resync(website=site)
        findings.append(Finding(key=f"reconcile:website_error:{site.pk}", retried=True,
                                title=f"Website {site.primary_domain} was in error: converging again",
                                detail=site.last_error, object_id=str(site.pk), **base))  # fmt: skip
        return
    if suspended_plan and site.status == WebsiteStatus.ACTIVE:
        services.account_suspend(sub)  # the plan is suspended: its site must not serve
        findings.append(Finding(key=f"reconcile:website_serving:{site.pk}", retried=True,
                                title=f"Website {site.primary_domain} served while its plan is suspended",
                                detail="Suspended again.", object_id=str(site.pk), **base))  # fmt: skip
        return
    if not suspended_plan and site.status == WebsiteStatus.SUSPENDED and str(site.pk) in account.suspended_sites:
        services.account_resume(sub)
        findings.append(Finding(key=f"reconcile:website_suspended:{site.pk}", retried=True,
                                title=f"Website {site.primary_domain} was suspended while its plan is paid",
                                detail="Resumed.", object_id=str(site.pk), **base))  # fmt: skip
        return
    if site.status not in (WebsiteStatus.ACTIVE, WebsiteStatus.SUSPENDED):
        return  # pending: its job is on the way
    try:
        state = driver_for(site.node).site_state(site.site_id)
    except NodeError as exc:
        findings.append(Finding(key=f"reconcile:node_unreachable:{site.node_id}", retried=False,
                                title=f"Node {site.node.hostname} did not answer the check",
                                detail=str(exc)[:500], object_type="node", object_id=str(site.node_id),
                                customer_id=sub.customer_id, subscription_id=sub.pk))  # fmt: skip
        return
    if not state.get("vhost"):
        website_services.website_resync(website=site)
        findings.append(Finding(key=f"reconcile:vhost_missing:{site.pk}", retried=True,
                                title=f"Website {site.primary_domain}'s configuration was missing on "
                                      f"{site.node.hostname}: written again",
                                detail="The vhost file was gone from the node; a website.update job restores it.",
                                object_id=str(site.pk), **base))  # fmt: skip


def _check_mail(sub: Subscription, findings: list[Finding]) -> None:
    """The plan's mail follows the plan: a suspended plan's mail domains are suspended (one resumed
    behind the panel is suspended again), and a paid plan's domains that its suspension held are
    resumed. Read after ``_check_site``, which may have just done either."""
    account = services.account_of(sub)
    if account is None or account.status == AccountStatus.DELETED:
        return
    base = {"customer_id": sub.customer_id, "subscription_id": sub.pk, "object_type": "mail_domain"}
    if sub.status == SubscriptionStatus.SUSPENDED:
        covered = {*account.suspended_mail_domains, *([str(account.mail_domain_id)] if account.mail_domain_id else [])}
        serving = list(MailDomain.all_tenants.filter(pk__in=covered, suspended=False))
        if serving:
            services.account_suspend(sub)
            for domain in serving:
                findings.append(Finding(key=f"reconcile:mail_serving:{domain.pk}", retried=True,
                                        title=f"Mail domain {domain.name} took mail while its plan is suspended",
                                        detail="Suspended again.", object_id=str(domain.pk), **base))  # fmt: skip
        return
    held = list(MailDomain.all_tenants.filter(pk__in=account.suspended_mail_domains, suspended=True))
    if held:
        services.account_resume(sub)
        for domain in held:
            findings.append(Finding(key=f"reconcile:mail_suspended:{domain.pk}", retried=True,
                                    title=f"Mail domain {domain.name} was suspended while its plan is paid",
                                    detail="Resumed.", object_id=str(domain.pk), **base))  # fmt: skip


def _check_plans(tenant: Tenant, findings: list[Finding], report: Report) -> None:
    subs = Subscription.objects.select_related("product", "customer", "tenant").filter(
        product__type="hosting_plan", status__in=LIVE_PLAN
    )
    for sub in subs:
        report.checked += 1
        account = services.account_of(sub)
        if account is None or account.status in (AccountStatus.ERROR, AccountStatus.PENDING):
            _retry_activation(sub)
            findings.append(Finding(key=f"reconcile:account_missing:{sub.pk}", retried=True,
                                    title=f"Paid hosting plan {sub.product.name} for {sub.customer} is not provisioned",
                                    detail=(account.last_error if account else "") or "The activation was run again.",
                                    customer_id=sub.customer_id, subscription_id=sub.pk, object_type="subscription",
                                    object_id=str(sub.pk)))  # fmt: skip
            continue
        if account.status == AccountStatus.DELETED:
            findings.append(Finding(key=f"reconcile:account_deleted:{sub.pk}", retried=False,
                                    title=f"Paid hosting plan {sub.product.name} for {sub.customer} has a terminated "
                                          "account",
                                    detail="The subscription is live but its account was terminated; decide whether "
                                           "to cancel the subscription or to provision a new plan.",
                                    customer_id=sub.customer_id, subscription_id=sub.pk, object_type="subscription",
                                    object_id=str(sub.pk)))  # fmt: skip
            continue
        if account.domain:
            _check_site(sub, account, findings)
        _check_mail(sub, findings)


def _check_orphans(tenant: Tenant, findings: list[Finding]) -> None:
    """Customers' resources that no live plan covers: reported, never deleted."""
    covered = set(
        HostingAccount.objects.filter(status__in=LIVE_ACCOUNT, subscription__status__in=LIVE_PLAN).values_list(
            "customer_id", flat=True
        )
    )
    sites = Website.objects.exclude(status__in=[WebsiteStatus.DELETED, WebsiteStatus.DELETING]).exclude(
        customer_id=None
    )
    for site in sites.select_related("customer"):
        if site.customer_id in covered:
            continue
        findings.append(Finding(key=f"reconcile:orphan_website:{site.pk}", retried=False,
                                title=f"Website {site.primary_domain} of {site.customer} has no live hosting plan",
                                detail="Nothing was deleted. Suspend or delete the website, or sell the customer a "
                                       "plan.", customer_id=site.customer_id, object_type="website",
                                object_id=str(site.pk)))  # fmt: skip
    for mail_domain in MailDomain.objects.exclude(customer_id=None).select_related("customer"):
        if mail_domain.customer_id in covered:
            continue
        findings.append(Finding(key=f"reconcile:orphan_mail_domain:{mail_domain.pk}", retried=False,
                                title=f"Mail domain {mail_domain.name} of {mail_domain.customer} has no live hosting "
                                      "plan", detail="Nothing was deleted.", customer_id=mail_domain.customer_id,
                                object_type="mail_domain", object_id=str(mail_domain.pk)))  # fmt: skip


def reconcile_tenant(tenant: Tenant) -> Report:
    report = Report()
    findings: list[Finding] = []
    with tenant_scope(tenant):
        _check_plans(tenant, findings, report)
        _check_orphans(tenant, findings)
        with transaction.atomic():
            seen = set()
            new = []
            for finding in findings:
                seen.add(finding.key)
                todo, made = services.todo_open(
                    tenant_id=tenant.pk, kind=TodoKind.RECONCILE, key=finding.key, title=finding.title,
                    detail=finding.detail, customer_id=finding.customer_id, subscription_id=finding.subscription_id,
                    object_type=finding.object_type, object_id=finding.object_id,
                )  # fmt: skip
                (report.retried if finding.retried else report.reported).append(finding.key)
                if made and not finding.retried:
                    new.append(todo)
            # A finding that is not found again is fixed: its to-do closes itself.
            for todo in Todo.objects.filter(kind=TodoKind.RECONCILE, status=TodoStatus.OPEN).exclude(key__in=seen):
                services.todo_resolve(todo, "Not found again by the reconciliation check.")
                report.resolved += 1
            if new:
                services.notify_staff(
                    tenant.pk, f"{len(new)} hosting problem(s) need a person",
                    "The reconciliation check found:\n" + "\n".join(f"- {t.title}" for t in new),
                )  # fmt: skip
    return report


def reconcile_all() -> dict:
    """Every active tenant, one after the other (the Celery beat entry point: ``hosting.reconcile``)."""
    out = {}
    for tenant in Tenant.objects.all().order_by("pk"):
        try:
            out[str(tenant.pk)] = reconcile_tenant(tenant).as_dict()
        except Exception:  # one tenant's failure must not stop the others' check
            log.exception("hosting reconciliation failed for tenant %s", tenant.pk)
            out[str(tenant.pk)] = {"error": True}
    return out
