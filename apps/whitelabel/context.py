"""``{{ brand }}`` in templates rendered for a request that names a portal tenant.

The portal (and the custom-domain middleware) set ``request.portal_tenant``; every template of
that request then has ``brand`` (a ``selectors.BrandView``: ``display_name``, ``logo_url``,
``primary_color``, ``on_primary``, ``support_email``…). Any other request gets nothing added.
"""

from __future__ import annotations

from .selectors import brand_for


def brand(request) -> dict:
    tenant = getattr(request, "portal_tenant", None)
    return {"brand": brand_for(tenant)} if tenant is not None else {}
