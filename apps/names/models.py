from django.db import models

from apps.tenancy.models import Tenant, TenantOwnedModel


class NameDelegation(TenantOwnedModel):
    """The holding tenant (``tenant``) lets ``grantee`` take ``name`` and the names under it,
    although they sit in a tree the holder holds (``apps.names.claims``)."""

    name = models.CharField(max_length=253)
    grantee = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)

    audit_fields = ("name", "grantee")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name", "grantee"], name="uniq_name_delegation"),
        ]
        indexes = [models.Index(fields=["grantee", "tenant"], name="name_delegation_grantee")]

    def __str__(self) -> str:
        return f"{self.name} → {self.grantee}"
