"""Hosting accounts (one per hosting-plan subscription) and the to-dos of a tenant's staff."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.billing.models import Subscription
from apps.customers.models import Customer
from apps.jobs.errors import TenantErrorField
from apps.mail.models import MailDomain
from apps.nodes.models import Node
from apps.tenancy.models import TenantOwnedModel
from apps.websites.models import Website


class AccountStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # the subscription is paid; the activation job has not finished
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"  # websites answer the suspension page; no new resources
    DELETED = "deleted", "Deleted"  # terminated: its websites and mail domain were removed
    ERROR = "error", "Error"


LIVE_ACCOUNT = [AccountStatus.PENDING, AccountStatus.ACTIVE, AccountStatus.SUSPENDED, AccountStatus.ERROR]


class HostingAccount(TenantOwnedModel):
    """A customer's hosting plan made real: its web node, system user, first website and mail
    domain, and the limits every resource made for the customer is checked against.

    ``limits`` is what holds now: the plan's config, plus its active add-ons, with the tenant's
    ``limit_overrides`` on top (recomputed by ``services.account_refresh_limits``)."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    subscription = models.OneToOneField(Subscription, on_delete=models.PROTECT, related_name="hosting_account")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    system_user = models.CharField(max_length=32, blank=True, help_text="the first website's Unix user")
    domain = models.CharField(max_length=253, blank=True, help_text="the order's domain (empty: none given)")
    website = models.ForeignKey(Website, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    mail_domain = models.ForeignKey(MailDomain, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=12, choices=AccountStatus.choices, default=AccountStatus.PENDING)
    limits = models.JSONField(default=dict, blank=True)
    limit_overrides = models.JSONField(default=dict, blank=True)
    # The websites the plan's suspension suspended (a resume resumes these, never a site the tenant
    # had suspended for its own reasons).
    suspended_sites = models.JSONField(default=list, blank=True)
    # Likewise the mail domains it suspended (mail deferred, logins refused on the mail node).
    suspended_mail_domains = models.JSONField(default=list, blank=True)
    disk_used_mb = models.PositiveBigIntegerField(default=0)
    disk_measured_at = models.DateTimeField(null=True, blank=True)
    over_quota_since = models.DateTimeField(null=True, blank=True, help_text="when disk use crossed the quota")
    # Bytes the customer's websites served in the subscription's current period (nginx's logs,
    # agent/bandwidth.py), from ``bandwidth_period_start`` (the metering period of both meters); a new
    # period starts again from 0.
    bandwidth_used_bytes = models.PositiveBigIntegerField(default=0)
    bandwidth_period_start = models.DateField(null=True, blank=True)
    # The highest disk measurement of that period: disk overage is billed on the peak, as hosts do, so
    # files deleted just before the period ends do not hide a month over the quota.
    disk_peak_mb = models.PositiveBigIntegerField(default=0)
    bandwidth_measured_at = models.DateTimeField(null=True, blank=True)
    # Per quota ("disk_quota_mb", "bandwidth_gb"), the level last notified: 80 or 100 (%). A crossing
    # upward notifies once; falling back under lowers it, so the next crossing notifies again.
    quota_levels = models.JSONField(default=dict, blank=True)
    last_error = TenantErrorField(blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)

    audit_fields = (
        "customer", "subscription", "node", "system_user", "domain", "website", "mail_domain", "status", "limits",
        "limit_overrides",
    )  # fmt: skip

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["tenant", "customer", "status"]),
        ]

    def __str__(self) -> str:
        return self.domain or f"account {str(self.pk)[:8]}"


class TodoKind(models.TextChoices):
    SERVICE = "service", "Service to deliver"  # a sold one-off or recurring service
    RECONCILE = "reconcile", "Reconciliation finding"  # something the periodic check could not fix
    QUOTA = "quota", "Quota crossed"  # a hosting account crossed 80 % or 100 % of its disk or bandwidth


class TodoStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class Todo(TenantOwnedModel):
    """Work for the tenant's staff. ``key`` says what it is about (one open to-do per key):
    ``service:<order item or subscription>`` or ``reconcile:<finding>:<object>``. A reconciliation
    to-do whose problem is gone at the next check closes itself (``closed_by`` empty)."""

    kind = models.CharField(max_length=10, choices=TodoKind.choices)
    key = models.CharField(max_length=200)
    title = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    customer = models.ForeignKey(Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    subscription = models.ForeignKey(Subscription, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=8, choices=TodoStatus.choices, default=TodoStatus.OPEN)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolution = models.TextField(blank=True)

    audit_fields = ("kind", "key", "title", "status", "resolution", "closed_by")

    class Meta:
        verbose_name = "to-do"
        verbose_name_plural = "to-dos"
        ordering = ["status", "-created_at"]
        indexes = [models.Index(fields=["tenant", "status", "-created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "key"], condition=models.Q(status="open"), name="hosting_todo_one_open_per_key"
            )
        ]

    def __str__(self) -> str:
        return self.title
