"""The public catalog's cache: one entry per tenant slug, dropped when anything in it changes.

Invalidation hangs on model signals (Product, Price, BundleItem, and the Tenant itself), so writes
through the services, the admin or a shell all count. The entry is dropped after the transaction
commits: a reader that filled the cache from the old rows before the commit cannot keep them.
``MPANEL_CATALOG_CACHE_SECONDS`` (default 60) bounds staleness in any case.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save

from apps.tenancy.models import Tenant

from .models import BundleItem, Price, Product

PREFIX = "catalog:public:v1:"


def ttl() -> int:
    return int(getattr(settings, "MPANEL_CATALOG_CACHE_SECONDS", 60))


def key(slug: str) -> str:
    return f"{PREFIX}{slug}"


def get(slug: str):
    return cache.get(key(slug))


def put(slug: str, data) -> None:
    cache.set(key(slug), data, timeout=ttl())


def invalidate_slug(slug: str) -> None:
    transaction.on_commit(lambda: cache.delete(key(slug)))


def invalidate_tenant(tenant_id) -> None:
    slug = Tenant.objects.filter(pk=tenant_id).values_list("slug", flat=True).first()
    if slug:
        invalidate_slug(slug)


def _on_catalog_change(sender, instance, **kwargs):
    if instance.tenant_id is None:
        return
    tenant = instance._state.fields_cache.get("tenant")  # saves a query when the caller set the object
    if tenant is not None and tenant.pk == instance.tenant_id:
        invalidate_slug(tenant.slug)
    else:
        invalidate_tenant(instance.tenant_id)


def _on_tenant_pre_save(sender, instance, **kwargs):
    # A renamed slug: drop the entry under the old name too.
    if instance.pk is not None:
        old = sender.objects.filter(pk=instance.pk).values_list("slug", flat=True).first()
        if old and old != instance.slug:
            invalidate_slug(old)


def _on_tenant_change(sender, instance, **kwargs):
    if instance.slug:
        invalidate_slug(instance.slug)


def connect_signals() -> None:
    for model in (Product, Price, BundleItem):
        post_save.connect(_on_catalog_change, sender=model, dispatch_uid=f"catalog-cache-save-{model.__name__}")
        post_delete.connect(_on_catalog_change, sender=model, dispatch_uid=f"catalog-cache-delete-{model.__name__}")
    pre_save.connect(_on_tenant_pre_save, sender=Tenant, dispatch_uid="catalog-cache-tenant-pre-save")
    post_save.connect(_on_tenant_change, sender=Tenant, dispatch_uid="catalog-cache-tenant-save")
    post_delete.connect(_on_tenant_change, sender=Tenant, dispatch_uid="catalog-cache-tenant-delete")
