"""Rules about bundles, shared by the services and the admin's forms."""

from __future__ import annotations

from .models import BundleItem, Product


def bundle_component_problem(*, bundle: Product, component: Product) -> str | None:
    """Why ``component`` cannot go into ``bundle``, or None.

    Bundles are one level deep: a bundle's components are plain products, so a bundle can never
    contain itself, directly or through another bundle.
    """
    if bundle.pk is not None and component.pk == bundle.pk:
        return "A bundle cannot contain itself."
    if bundle.tenant_id is not None and component.tenant_id != bundle.tenant_id:
        return "Must belong to the same tenant."
    if component.is_retired:
        return f"{component.name} is retired and cannot be added to a bundle."
    # The ids are this tenant's (checked above): the unscoped manager is safe and works in the admin too.
    if BundleItem.all_tenants.filter(bundle_id=component.pk).exists():
        return f"{component.name} is a bundle itself; bundles cannot be nested."
    if bundle.pk is not None and BundleItem.all_tenants.filter(component_id=bundle.pk).exists():
        return "This product is a component of another bundle, so it cannot have components."
    return None
