import hashlib
import secrets
import uuid
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.text import slugify
from django_countries.fields import CountryField

from apps.common import statements

from .roles import RANK, Role
from .scoping import ScopeError, TenantManager, current_tenant


class TimestampedModel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Tenant(TimestampedModel):
    """A hosting business (or reseller) on the platform."""

    # Events about a tenant belong to that tenant's trail (``audit.tenant_of``).
    audit_is_tenant = True

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    default_currency = models.CharField(max_length=3, default="USD")
    country = CountryField(blank=True)

    audit_fields = ("name", "default_currency", "country", "status")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = unique_slug(self.name)
        super().save(*args, **kwargs)


def unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "tenant"
    slug = base
    while Tenant.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


class Membership(TimestampedModel):
    """A user's one role in one tenant."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="uniq_membership")]
        indexes = [models.Index(fields=["user", "tenant"])]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"

    @property
    def rank(self) -> int:
        return RANK[self.role]


def _invitation_expiry():
    return timezone.now() + timedelta(days=7)


INVITATION_STATUSES = ["invited", "accepted", "declined", "revoked", "expired"]


class Invitation(TimestampedModel):
    """An invitation of an email address to a tenant. Nobody joins a tenant without accepting one
    (consent): whether or not the address has an account, the invitation is the same."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations", db_index=False)
    email = models.EmailField()
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(default=_invitation_expiry)
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    declined_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "email"])]

    def __str__(self) -> str:
        return f"{self.email} → {self.tenant} ({self.role})"

    @staticmethod
    def hash(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @property
    def is_open(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.declined_at is None
            and self.expires_at > timezone.now()
        )

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.declined_at:
            return "declined"
        if self.revoked_at:
            return "revoked"
        return "invited" if self.is_open else "expired"


class TenantOwnedModel(TimestampedModel):
    """Base of every row that belongs to a tenant.

    ``objects`` is fail-closed (raises without a tenant in scope); ``all_tenants`` is the
    loud escape for operator and system code. ``save`` refuses a row whose tenant differs
    from the one in scope, and any foreign key that points at another tenant's row.
    """

    # No index of its own: every read of a tenant's rows filters on it, so each model declares an index or
    # unique constraint leading with it in its list's order (checked: ``apps.tenancy.checks``), which serves
    # the plain lookup too; a separate one would only be written on every INSERT and non-HOT UPDATE.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)

    objects = TenantManager()
    all_tenants = models.Manager()

    class Meta:
        abstract = True
        base_manager_name = "all_tenants"
        default_manager_name = "objects"

    def save(self, *args, **kwargs):
        self.check_before_save()
        # A new row, or the fields named of one, by a statement made once per model (apps.common.statements;
        # every other save, and any save someone listens to, is the ORM's).
        if args or not statements.save(self, **kwargs):
            super().save(*args, **kwargs)

    def check_before_save(self) -> None:
        """What ``save`` checks before it writes: the tenant (the one in scope when none is set, never
        another than it) and the links to other tenant-owned rows (the same tenant's only)."""
        if self.tenant_id is None:
            scoped = current_tenant()
            if scoped is None:
                raise ScopeError(f"{type(self).__name__} needs a tenant: set it or save inside tenant_scope().")
            self.tenant = scoped
        else:
            scoped = current_tenant()
            if scoped is not None and scoped.pk != self.tenant_id:
                raise ScopeError(f"{type(self).__name__} of another tenant cannot be saved in this scope.")
        self.check_tenant_links()

    def check_tenant_links(self) -> None:
        for field, related in _tenant_links(type(self)):
            value = getattr(self, field.attname)
            if value is None:
                continue
            cached = self._state.fields_cache.get(field.name)
            if cached is not None and cached.pk == value:
                other_tenant = cached.tenant_id
            else:
                other_tenant = related._base_manager.filter(pk=value).values_list("tenant_id", flat=True).first()
            if other_tenant != self.tenant_id:
                raise ValidationError({field.name: "Must belong to the same tenant."})


@cache
def _tenant_links(model: type[TenantOwnedModel]) -> tuple[tuple[models.Field, type[TenantOwnedModel]], ...]:
    """The foreign keys of ``model`` to other tenant-owned rows (checked on every save), found once per model."""
    return tuple(
        (field, field.related_model)
        for field in model._meta.concrete_fields
        if field.is_relation
        and field.name != "tenant"
        and isinstance(field.related_model, type)
        and issubclass(field.related_model, TenantOwnedModel)
    )
