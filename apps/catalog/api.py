from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantModelViewSet, TenantScopedViewSet

from . import services
from .filters import ProductFilter, TaxRateFilter
from .models import BundleItem, Product, TaxRate
from .serializers import PriceTableSerializer, PricingQuerySerializer, ProductSerializer, TaxRateSerializer


def with_prices(queryset):
    """Everything a product's representation and its price table read, in a fixed number of queries."""
    return queryset.prefetch_related(
        "prices",
        Prefetch(
            "bundle_items",
            queryset=BundleItem.all_tenants.select_related("component").prefetch_related("component__prices"),
        ),
    )


class ProductViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    TenantScopedViewSet,
):
    """The tenant's catalog (docs/modules/catalog.md). Reads and the price table BILLING+;
    create, update and retire ADMIN+. No DELETE: a product is retired (``POST /{id}/retire`` or
    ``visibility: retired``), so invoices and subscriptions that name it keep working."""

    queryset = Product.objects.all()
    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    search_fields = ["name", "slug", "description"]
    ordering_fields = ["name", "slug", "type", "visibility", "created_at", "updated_at"]
    ordering = ["name", "slug"]
    http_method_names = ["get", "post", "put", "patch", "head", "options"]
    required_roles = {
        "list": Role.BILLING,
        "retrieve": Role.BILLING,
        "pricing": Role.BILLING,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "retire": Role.ADMIN,
    }

    def scope_queryset(self, queryset):
        return with_prices(queryset)

    def _fresh(self, product: Product) -> Product:
        return with_prices(Product.all_tenants.filter(pk=product.pk)).get()

    def perform_create(self, serializer):
        product = services.product_create(tenant=self.tenant, data=serializer.validated_data)
        serializer.instance = self._fresh(product)

    def perform_update(self, serializer):
        product = services.product_update(product=serializer.instance, data=serializer.validated_data)
        serializer.instance = self._fresh(product)

    @extend_schema(
        parameters=[
            OpenApiParameter("country", str, description="ISO 3166-1 alpha-2: add that country's tax to each row")
        ],
        responses=PriceTableSerializer,
        summary="The computed price table (per currency and cycle)",
    )
    @action(detail=True, methods=["get"])
    def pricing(self, request, pk=None):
        product = self.get_object()
        query = PricingQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        table = services.price_table(product, country=query.validated_data.get("country") or None)
        return Response(PriceTableSerializer(table).data)

    @extend_schema(request=None, responses=ProductSerializer, summary="Retire the product (stop selling it)")
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        product = services.product_retire(product=self.get_object())
        return Response(ProductSerializer(self._fresh(product), context=self.get_serializer_context()).data)


class TaxRateViewSet(TenantModelViewSet):
    """Tax rates per country and tax class. Reads BILLING+, writes ADMIN+."""

    queryset = TaxRate.objects.all()
    serializer_class = TaxRateSerializer
    filterset_class = TaxRateFilter
    search_fields = ["name", "country"]
    ordering_fields = ["country", "tax_class", "rate", "created_at"]
    ordering = ["country", "tax_class"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    required_roles = {
        "list": Role.BILLING,
        "retrieve": Role.BILLING,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    def perform_create(self, serializer):
        serializer.instance = services.tax_rate_create(tenant=self.tenant, data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.tax_rate_update(tax_rate=serializer.instance, data=serializer.validated_data)

    def perform_destroy(self, instance):
        services.tax_rate_delete(tax_rate=instance)
