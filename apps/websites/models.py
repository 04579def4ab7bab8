from django.db import models

from apps.customers.models import Customer
from apps.jobs.errors import TenantErrorField
from apps.nodes.models import Node
from apps.tenancy.models import TenantOwnedModel


class WebsiteStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # created; the provision job has not finished yet
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"  # the site answers 503 with a suspension page
    DELETING = "deleting", "Deleting"
    DELETED = "deleted", "Deleted"
    ERROR = "error", "Error"


class WwwRedirect(models.TextChoices):
    NONE = "none", "None"
    WWW = "www", "To www."
    NON_WWW = "non-www", "To the bare domain"


class Website(TenantOwnedModel):
    """A site on one web node. ``status`` is the wanted state; the website.* jobs converge the node.

    The hostnames it answers to are ``domains`` rows (unique across the platform while the site lives).
    """

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="websites", db_index=False)
    primary_domain = models.CharField(max_length=253)
    aliases = models.JSONField(default=list, blank=True)
    site_id = models.CharField(max_length=64, unique=True, help_text="the site's name on its node")
    system_user = models.CharField(max_length=32)
    document_root = models.CharField(max_length=200, default="public", help_text="relative to the site's files")
    php_version = models.CharField(max_length=8, blank=True, help_text="empty: a static site")
    https = models.BooleanField(default=True)
    redirect_https = models.BooleanField(default=False)
    www_redirect = models.CharField(max_length=8, choices=WwwRedirect.choices, default=WwwRedirect.NONE)
    redirects = models.JSONField(default=list, blank=True)
    error_pages = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=WebsiteStatus.choices, default=WebsiteStatus.PENDING)
    certificate = models.JSONField(default=dict, blank=True)  # issuer, sha256, not_after of the served one
    last_error = TenantErrorField(blank=True)  # tenants read it: redacted (apps.jobs.errors)
    deleted_at = models.DateTimeField(null=True, blank=True)
    purge_after = models.DateTimeField(null=True, blank=True)

    # What the audit trail records of a site's before/after (apps.audit.services.snapshot).
    audit_fields = (
        "primary_domain",
        "aliases",
        "node",
        "customer",
        "system_user",
        "document_root",
        "php_version",
        "https",
        "redirect_https",
        "www_redirect",
        "redirects",
        "error_pages",
        "status",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["tenant", "status"]),
            models.Index(fields=["node", "status"]),
        ]
        permissions = [("manage_website_files", "Can change the files of this website")]
        constraints = [
            # One Unix user per live site on a node: two sites sharing one would share their files.
            models.UniqueConstraint(
                fields=["node", "system_user"],
                condition=~models.Q(status="deleted"),
                name="website_unique_system_user_per_node",
            )
        ]

    def __str__(self) -> str:
        return self.primary_domain

    @property
    def domains(self) -> list[str]:
        return [self.primary_domain, *self.aliases]


class WebsiteDomain(TenantOwnedModel):
    """One hostname of a live website. ``name`` is unique across every tenant."""

    website = models.ForeignKey(Website, on_delete=models.CASCADE, related_name="domain_rows")
    name = models.CharField(max_length=253, unique=True)
    is_primary = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["tenant", "name"])]

    def __str__(self) -> str:
        return self.name
