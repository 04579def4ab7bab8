"""System checks of the tenancy layer."""

from __future__ import annotations

from django.apps import apps
from django.core import checks
from django.db import models


def _leads_with_tenant(model: type[models.Model]) -> bool:
    meta = model._meta
    for index in meta.indexes:
        if index.fields and index.fields[0].lstrip("-") == "tenant" and index.condition is None:
            return True
    for constraint in meta.constraints:
        if (
            isinstance(constraint, models.UniqueConstraint)
            and constraint.fields
            and constraint.fields[0] == "tenant"
            and constraint.condition is None
        ):
            return True
    return any(fields and fields[0] == "tenant" for fields in meta.unique_together)


@checks.register(checks.Tags.models)
def tenant_rows_are_indexed(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Every tenant-owned model has an index (or unique constraint) leading with ``tenant``: its foreign key
    has no index of its own (``TenantOwnedModel``), and without one every scoped read scans the table."""
    from .models import TenantOwnedModel

    configs = app_configs or apps.get_app_configs()
    return [
        checks.Error(
            f"{model._meta.label} has no index leading with tenant.",
            hint='Add models.Index(fields=["tenant", …]) (in its list\'s order) to its Meta.indexes.',
            obj=model,
            id="tenancy.E001",
        )
        for config in configs
        for model in config.get_models()
        if issubclass(model, TenantOwnedModel) and not model._meta.abstract and not _leads_with_tenant(model)
    ]
