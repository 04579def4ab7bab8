from django_filters import rest_framework as filters

from .models import Node, with_role


class NodeFilter(filters.FilterSet):
    role = filters.CharFilter(method="filter_role")

    class Meta:
        model = Node
        fields = ["status", "transport"]

    def filter_role(self, queryset, name, value):
        return queryset.filter(with_role(value))
