from django.db import models
from django.db.models.functions import Lower
from django_countries.fields import CountryField

from apps.tenancy.models import TenantOwnedModel


class Customer(TenantOwnedModel):
    """A client of a tenant: the person or company that buys hosting."""

    # What the audit trail records, and what the admin's form edits (apps/customers/admin.py).
    audit_fields = (
        "kind", "name", "company", "email", "billing_email", "phone", "tax_id", "currency", "status",
        "address_line1", "address_line2", "city", "state", "postal_code", "country", "notes",
    )  # fmt: skip

    class Kind(models.TextChoices):
        PERSON = "person", "Person"
        COMPANY = "company", "Company"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        INACTIVE = "inactive", "Inactive"
        CLOSED = "closed", "Closed"

    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.PERSON)
    name = models.CharField(max_length=200)
    company = models.CharField(max_length=200, blank=True)
    email = models.EmailField()
    billing_email = models.EmailField(blank=True, help_text="Where invoices go; the main email when blank.")
    phone = models.CharField(max_length=40, blank=True)
    tax_id = models.CharField(max_length=64, blank=True)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    address_line1 = models.CharField(max_length=200, blank=True)
    address_line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = CountryField(blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["tenant", "status", "-created_at"]),
            models.Index(fields=["tenant", "name"]),
        ]
        constraints = [
            models.UniqueConstraint("tenant", Lower("email"), name="uniq_customer_email_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    @property
    def invoice_email(self) -> str:
        return self.billing_email or self.email


class Contact(TenantOwnedModel):
    """Another person at a customer: who gets the bills, who gets technical notices."""

    audit_fields = ("customer", "name", "email", "phone", "role")

    class Role(models.TextChoices):
        PRIMARY = "primary", "Primary"
        BILLING = "billing", "Billing"
        TECHNICAL = "technical", "Technical"
        OTHER = "other", "Other"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="contacts")
    name = models.CharField(max_length=200)
    email = models.EmailField()
    phone = models.CharField(max_length=40, blank=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.OTHER)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["tenant", "customer", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}> ({self.role})"
