"""Hosting databases: the database servers a tenant's nodes reach, and the databases, users and
grants the panel keeps on them. Names on the server (``full_name``) carry the tenant's prefix."""

from django.db import models

from apps.customers.models import Customer
from apps.jobs.errors import TenantErrorField
from apps.nodes.models import Node
from apps.tenancy.models import TenantOwnedModel


class Engine(models.TextChoices):
    POSTGRESQL = "postgresql", "PostgreSQL"
    MARIADB = "mariadb", "MariaDB"


class ServerStatus(models.TextChoices):
    PENDING = "pending", "Not checked yet"
    ACTIVE = "active", "Reachable"  # the node logged in with the admin credentials
    ERROR = "error", "Unreachable"  # it could not (``last_error``)


class ObjectStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # a job brings the server to this row
    ACTIVE = "active", "Active"
    ERROR = "error", "Error"  # the job gave up (``last_error``); the next change tries again
    REMOVING = "removing", "Removing"  # a job drops / revokes it, then removes the row


class DatabaseServer(TenantOwnedModel):
    """A PostgreSQL or MariaDB server that ``node`` acts on with the admin account.

    ``admin_password_encrypted`` is a Fernet token (apps/databases/crypto.py), never answered by
    the API, never in audit snapshots (the name holds "password"), never in job payloads: the job
    handler decrypts it for the one driver call.
    """

    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="+")
    engine = models.CharField(max_length=12, choices=Engine.choices)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    admin_user = models.CharField(max_length=80)
    admin_password_encrypted = models.TextField()
    status = models.CharField(max_length=12, choices=ServerStatus.choices, default=ServerStatus.PENDING)
    version = models.CharField(max_length=120, blank=True)
    last_error = TenantErrorField(blank=True)  # tenants read it: redacted (apps.jobs.errors)

    audit_fields = ("node", "engine", "host", "port", "admin_user", "status", "version")

    class Meta:
        ordering = ["engine", "host", "port"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "engine", "host", "port"], name="uniq_database_server"),
        ]
        indexes = [models.Index(fields=["tenant", "engine", "host", "port"], name="dbserver_tenant_order")]

    def __str__(self) -> str:
        return f"{self.get_engine_display()} {self.host}:{self.port}"


class Database(TenantOwnedModel):
    server = models.ForeignKey(DatabaseServer, on_delete=models.PROTECT, related_name="databases", db_index=False)
    name = models.CharField(max_length=63)  # as the tenant asked for it
    full_name = models.CharField(max_length=63)  # on the server: the tenant's prefix + name
    # The customer it is made for (empty: the tenant's own); a customer's hosting plan limits count it.
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=12, choices=ObjectStatus.choices, default=ObjectStatus.PENDING)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    size_updated_at = models.DateTimeField(null=True, blank=True)
    last_error = TenantErrorField(blank=True)  # tenants read it: redacted (apps.jobs.errors)

    audit_fields = ("server", "name", "full_name", "customer", "status")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "full_name"], name="uniq_database_on_server"),
        ]
        indexes = [models.Index(fields=["tenant", "name"], name="database_tenant_name")]

    def __str__(self) -> str:
        return self.full_name


class DatabaseUser(TenantOwnedModel):
    """A login on the server. Its password is shown once; the panel keeps only the verifier the
    server itself stores (PostgreSQL SCRAM-SHA-256 secret, MariaDB ``mysql_native_password``
    hash), so a job can (re)apply it and nothing here can log in."""

    server = models.ForeignKey(DatabaseServer, on_delete=models.PROTECT, related_name="users", db_index=False)
    name = models.CharField(max_length=63)
    full_name = models.CharField(max_length=63)
    status = models.CharField(max_length=12, choices=ObjectStatus.choices, default=ObjectStatus.PENDING)
    password_verifier = models.TextField()
    password_changed_at = models.DateTimeField()
    last_error = TenantErrorField(blank=True)  # tenants read it: redacted (apps.jobs.errors)

    audit_fields = ("server", "name", "full_name", "status", "password_changed_at")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "full_name"], name="uniq_database_user_on_server"),
        ]
        indexes = [models.Index(fields=["tenant", "name"], name="database_user_tenant_name")]

    def __str__(self) -> str:
        return self.full_name


class DatabaseGrant(TenantOwnedModel):
    """All privileges on ``database`` for ``user`` (same server)."""

    database = models.ForeignKey(Database, on_delete=models.CASCADE, related_name="grants", db_index=False)
    user = models.ForeignKey(DatabaseUser, on_delete=models.CASCADE, related_name="grants")
    status = models.CharField(max_length=12, choices=ObjectStatus.choices, default=ObjectStatus.PENDING)
    last_error = TenantErrorField(blank=True)  # tenants read it: redacted (apps.jobs.errors)

    audit_fields = ("database", "user", "status")

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["database", "user"], name="uniq_database_grant")]
        indexes = [models.Index(fields=["tenant", "database", "created_at"], name="database_grant_tenant")]

    def __str__(self) -> str:
        return f"{self.user} on {self.database}"
