import django_filters

from .models import Order, OrderStatus


class OrderFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=OrderStatus.choices)
    customer = django_filters.UUIDFilter(field_name="customer_id")

    class Meta:
        model = Order
        fields = ["status", "customer", "currency"]
