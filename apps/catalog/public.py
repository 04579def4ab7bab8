"""The public catalog: no authentication, throttled ("public" scope), cached per tenant slug.

``GET /api/v1/products?tenant=<slug>`` and ``GET /api/v1/billing/products/catalog/public?tenant=<slug>``
answer the same list: the PUBLIC products of one active tenant with their prices (explicit, or a
bundle's computed price), and nothing internal (no stock, tax class, config, metering, or ids other
than the product's). ``brand`` is the tenant's white-label brand (apps/whitelabel): the name, logo,
colours and contact a storefront shows; it is read from its own cache on every answer, so a brand
change shows at once.
"""

from __future__ import annotations

from django.core.validators import slug_re
from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.throttling import DynamicScopedRateThrottle
from apps.tenancy.models import Tenant
from apps.tenancy.scoping import tenant_scope
from apps.whitelabel.selectors import brand_for

from . import cache
from .models import BundleItem, Product, Visibility
from .pricing import price_table
from .serializers import PublicCatalogSerializer, money


def public_catalog(tenant: Tenant) -> dict:
    """The public catalog of ``tenant`` as plain JSON-ready data (what the cache holds)."""
    with tenant_scope(tenant):
        products = list(
            Product.objects.filter(visibility=Visibility.PUBLIC)
            .order_by("name", "slug")
            .prefetch_related(
                "prices",
                Prefetch(
                    "bundle_items",
                    queryset=BundleItem.objects.select_related("component").prefetch_related("component__prices"),
                ),
            )
        )
        results = []
        for product in products:
            rows = price_table(product).rows
            results.append(
                {
                    "id": str(product.pk),
                    "name": product.name,
                    "slug": product.slug,
                    "description": product.description,
                    "type": product.type,
                    "includes": [
                        {"name": item.component.name, "quantity": item.quantity} for item in product.bundle_items.all()
                    ],
                    "prices": [
                        {
                            "currency": r.currency,
                            "cycle": r.cycle,
                            "amount": money(r.recurring, r.currency),
                            "setup_fee": money(r.setup_fee, r.currency),
                            "effective_monthly": money(r.effective_monthly, r.currency),
                        }
                        for r in rows
                    ],
                }
            )
    return {
        "count": len(results),
        "next": None,
        "previous": None,
        "tenant": {"name": tenant.name, "slug": tenant.slug},
        "results": results,
        TENANT_ID: str(tenant.pk),  # for the brand; never answered
    }


TENANT_ID = "_tenant_id"


class PublicCatalogView(APIView):
    """The public products of one tenant, named by ``?tenant=<slug>``."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [DynamicScopedRateThrottle]
    throttle_scope = "public"

    @extend_schema(
        parameters=[OpenApiParameter("tenant", str, required=True, description="The tenant's slug")],
        responses=PublicCatalogSerializer,
        summary="Public catalog of a tenant",
        auth=[],
    )
    def get(self, request):
        slug = (request.query_params.get("tenant") or "").strip()
        if not slug:
            raise exceptions.ValidationError({"tenant": ["This query parameter is required (the tenant's slug)."]})
        # Not a slug at all: no tenant has it, and it never reaches a cache key.
        if len(slug) > 80 or not slug_re.match(slug):
            raise exceptions.NotFound("No such catalog.")
        data = cache.get(slug)
        if data is None or TENANT_ID not in data:
            tenant = Tenant.objects.filter(slug=slug, status=Tenant.Status.ACTIVE).first()
            if tenant is None:
                raise exceptions.NotFound("No such catalog.")
            data = public_catalog(tenant)
            cache.put(slug, data)
        answer = {key: value for key, value in data.items() if key != TENANT_ID}
        try:
            brand = brand_for(data[TENANT_ID])
        except Tenant.DoesNotExist:  # deleted since its catalog was cached
            raise exceptions.NotFound("No such catalog.") from None
        answer["tenant"] = {**answer["tenant"], "name": brand.display_name}
        answer["brand"] = brand.public()
        return Response(answer)
