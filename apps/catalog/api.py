from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

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


class ProductViewSet(ResourceViewSet):
    """The tenant's catalog. Reads and the price table BILLING+;
    create, update and retire ADMIN+. No DELETE: a product is retired (``POST /{id}/retire`` or
    ``visibility: retired``), so invoices and subscriptions that name it keep working."""

    queryset = Product.objects.all()
    serializer_class = ProductSerializer
    input_serializers = {"create": ProductSerializer, "update": ProductSerializer}
    filterset_class = ProductFilter
    search_fields = ["name", "slug", "description"]
    ordering_fields = ["name", "slug", "type", "visibility", "created_at", "updated_at"]
    ordering = ["name", "slug"]
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

    def create_resource(self, data):
        return self.current(services.product_create(tenant=self.tenant, data=data))

    def update_resource(self, obj, data):
        return self.current(services.product_update(product=obj, data=data))

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
        query = self.validated(PricingQuerySerializer, data=request.query_params)
        table = services.price_table(product, country=query.get("country") or None)
        return self.answer(table, serializer=PriceTableSerializer)

    @extend_schema(request=None, responses=ProductSerializer, summary="Retire the product (stop selling it)")
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        return self.answer(self.current(services.product_retire(product=self.get_object())))


class TaxRateViewSet(ResourceViewSet):
    """Tax rates per country and tax class. Reads BILLING+, writes ADMIN+."""

    queryset = TaxRate.objects.all()
    serializer_class = TaxRateSerializer
    input_serializers = {"create": TaxRateSerializer, "update": TaxRateSerializer}
    destroy_answers_object = False
    filterset_class = TaxRateFilter
    search_fields = ["name", "country"]
    ordering_fields = ["country", "tax_class", "rate", "created_at"]
    ordering = ["country", "tax_class"]
    required_roles = {
        "list": Role.BILLING,
        "retrieve": Role.BILLING,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
    }

    def create_resource(self, data):
        return services.tax_rate_create(tenant=self.tenant, data=data)

    def update_resource(self, obj, data):
        return services.tax_rate_update(tax_rate=obj, data=data)

    def destroy_resource(self, obj):
        services.tax_rate_delete(tax_rate=obj)
