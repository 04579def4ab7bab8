"""The ``tenancy.E001`` system check: a tenant-owned model whose ``tenant`` no index leads with is an error
(``TenantOwnedModel.tenant`` has no index of its own; see tests/kernel/test_redundant_indexes.py)."""

from __future__ import annotations

from django.db import models
from django.test.utils import isolate_apps

from apps.tenancy.checks import _leads_with_tenant, tenant_rows_are_indexed
from apps.tenancy.models import TenantOwnedModel


def test_every_tenant_owned_model_of_the_project_has_one():
    assert tenant_rows_are_indexed() == []


@isolate_apps("tests.support")
def test_what_counts_as_an_index_leading_with_tenant():
    class Indexed(TenantOwnedModel):
        class Meta:
            app_label = "testsupport"
            indexes = [models.Index(fields=["tenant", "-created_at"])]

    class Unique(TenantOwnedModel):
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "testsupport"
            constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="t_unique_name")]

    class Together(TenantOwnedModel):
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "testsupport"
            unique_together = [("tenant", "name")]

    class Partial(TenantOwnedModel):
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "testsupport"
            constraints = [
                models.UniqueConstraint(
                    fields=["tenant", "name"], condition=models.Q(name__gt=""), name="t_partial_name"
                )
            ]

    class Trailing(TenantOwnedModel):
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "testsupport"
            indexes = [models.Index(fields=["name", "tenant"])]

    class Bare(TenantOwnedModel):
        class Meta:
            app_label = "testsupport"

    assert [_leads_with_tenant(m) for m in (Indexed, Unique, Together)] == [True] * 3
    assert [_leads_with_tenant(m) for m in (Partial, Trailing, Bare)] == [False] * 3

    class Config:  # an app config holding these models, as the check framework passes them
        @staticmethod
        def get_models():
            return [Indexed, Bare]

    errors = tenant_rows_are_indexed(app_configs=[Config])
    assert [(e.id, e.obj) for e in errors] == [("tenancy.E001", Bare)]
