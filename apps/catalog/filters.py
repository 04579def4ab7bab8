import django_filters
from django.db.models import Exists, OuterRef

from apps.common.money import CURRENCY_CHOICES

from .models import BundleItem, Price, Product, TaxRate


class ProductFilter(django_filters.FilterSet):
    currency = django_filters.ChoiceFilter(
        choices=[(c, c) for c in CURRENCY_CHOICES], method="filter_currency", label="Has a price in this currency"
    )
    is_bundle = django_filters.BooleanFilter(method="filter_is_bundle", label="Is a bundle")

    class Meta:
        model = Product
        fields = ["type", "visibility", "tax_class", "currency", "is_bundle"]

    def filter_currency(self, queryset, name, value):
        # The outer query is tenant-filtered; the subquery is tied to it by product id.
        return queryset.filter(Exists(Price.all_tenants.filter(product=OuterRef("pk"), currency=value)))

    def filter_is_bundle(self, queryset, name, value):
        has_items = Exists(BundleItem.all_tenants.filter(bundle=OuterRef("pk")))
        return queryset.filter(has_items if value else ~has_items)


class TaxRateFilter(django_filters.FilterSet):
    class Meta:
        model = TaxRate
        fields = ["country", "tax_class"]
